"""Render the docs' report images: every PDF page of ``health_report`` and every sheet of
``analytics_workbook``, as PNGs in ``docs/``.

    .venv/bin/python docs/render_pages.py            # writes docs/health_report-page*.png
                                                     # and docs/analytics_workbook-*.png

It writes the ``make run`` sample deployment (300 proxies, 14 days ending 2026-11-20) into a
temporary folder, materializes ``proxy_metrics`` for the report's 7 days and then both
reports of 2026-11-20 through Dagster, exactly as a user's run does. PDF pages are rasterized
with poppler's ``pdftoppm``; the workbook is laid out by LibreOffice Calc (headless), one
page per sheet, so the images show what a spreadsheet program shows, charts included. Both
tools are Debian packages, with Carlito, a font with Calibri's metrics: ``apt-get install
--no-install-recommends poppler-utils libreoffice-calc-nogui fonts-crosextra-carlito`` (a
missing tool is named, with that command).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from PIL import Image

DOCS = Path(__file__).resolve().parent
REPORT_DAY = date(2026, 11, 20)
DPI = 110
# The Proxies sheet holds the whole pool: its image shows the top rows only.
MAX_SHEET_HEIGHT_PX = 900
# Carlito has Calibri's metrics (the workbook's font): columns look as wide as in Excel.
APT = (
    "apt-get install --no-install-recommends poppler-utils libreoffice-calc-nogui "
    "fonts-crosextra-carlito"
)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        sys.exit(f"render_pages: {name} is not installed; install it with: {APT}")
    return path


def _succeeded(result: Any, what: str) -> None:
    if not result.success:
        sys.exit(f"render_pages: materializing {what} failed (see the log above)")


def _reports(work: Path) -> tuple[Path, Path]:
    """The sample's health report and workbook of REPORT_DAY, materialized through Dagster."""
    from dagster import DagsterInstance, materialize

    from export_assets.defs.exports.proxy_metrics import proxy_metrics
    from export_assets.defs.reports import REPORT_ASSETS
    from export_assets.defs.resources.io_manager import ExportIOManager
    from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
    from export_assets.defs.resources.store import ExportStore
    from export_assets.lib.sample import write_sample_deployment

    sample = write_sample_deployment(work / "proxywhirl", end_date=REPORT_DAY)
    # Its keys, as `make run` loads them from its .env: the leak scan reads credentials in full.
    for line in sample.env_file.read_text().splitlines():
        name, _, value = line.partition("=")
        if name.endswith("KEY") and value:
            os.environ[name] = value
    exports = work / "exports"
    store = ExportStore(destination=str(exports))
    proxywhirl = ProxyWhirlSource(
        database=str(sample.database),
        log_dir=str(sample.log_dir),
        config_path=str(sample.config_path),
    )
    resources = {
        "proxywhirl": proxywhirl,
        "export_store": store,
        "io_manager": ExportIOManager(store=store, proxywhirl=proxywhirl),
    }
    with DagsterInstance.ephemeral() as instance:
        for back in range(6, -1, -1):
            day = (REPORT_DAY - timedelta(days=back)).isoformat()
            _succeeded(
                materialize(
                    [proxy_metrics], partition_key=day, instance=instance, resources=resources
                ),
                f"proxy_metrics {day}",
            )
        _succeeded(
            materialize(
                REPORT_ASSETS,
                partition_key=REPORT_DAY.isoformat(),
                instance=instance,
                resources=resources,
                raise_on_error=False,
            ),
            "the reports",
        )
    day = REPORT_DAY.isoformat()

    def published(asset: str, extension: str) -> Path:
        return exports / asset / f"dt={day}" / f"{asset}-{day}{extension}"

    return published("health_report", ".pdf"), published("analytics_workbook", ".xlsx")


def _rasterize(pdf: Path, prefix: Path) -> list[Path]:
    """One PNG per page of ``pdf``, in page order."""
    subprocess.run(  # noqa: S603 (our own arguments)
        [_tool("pdftoppm"), "-r", str(DPI), "-png", str(pdf), str(prefix)], check=True
    )
    pages = sorted(
        prefix.parent.glob(f"{prefix.name}-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1])
    )
    if not pages:
        sys.exit(f"render_pages: pdftoppm made no page of {pdf}")
    return pages


def _sheets_pdf(workbook: Path, work: Path) -> Path:
    """The workbook laid out by LibreOffice Calc, each sheet on one page of its own size."""
    options = json.dumps({"SinglePageSheets": {"type": "boolean", "value": "true"}})
    profile = (work / "lo-profile").as_uri()  # a private profile: no clash with a running one
    subprocess.run(  # noqa: S603 (our own arguments)
        [
            _tool("soffice"),
            f"-env:UserInstallation={profile}",
            "--headless",
            "--convert-to",
            f"pdf:calc_pdf_Export:{options}",
            "--outdir",
            str(work),
            str(workbook),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    return work / f"{workbook.stem}.pdf"


def _save(image: Image.Image, target: Path) -> None:
    """A PNG in full colour (a 256-colour palette shifts the small red and green change
    figures towards grey)."""
    image.convert("RGB").save(target, optimize=True)


def _check_calibri_metrics() -> None:
    """Without Carlito, LibreOffice draws Calibri with a wider font: columns look too narrow."""
    found = subprocess.run(  # noqa: S603 (our own arguments)
        [_tool("fc-match"), "Calibri"], capture_output=True, text=True, check=False
    ).stdout
    if "Carlito" not in found:
        sys.exit(f"render_pages: no font with Calibri's metrics ({found.strip()}); install: {APT}")


def render(out: Path) -> list[Path]:
    """Write the PNGs into ``out`` and return their paths."""
    from openpyxl import load_workbook

    _check_calibri_metrics()
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="render-pages-") as folder:
        work = Path(folder)
        report, workbook = _reports(work)
        for number, page in enumerate(_rasterize(report, work / "report"), start=1):
            target = out / f"health_report-page{number}.png"
            with Image.open(page) as image:
                _save(image, target)
            written.append(target)
        sheets = load_workbook(workbook, read_only=True).sheetnames
        pages = _rasterize(_sheets_pdf(workbook, work), work / "sheet")
        if len(pages) != len(sheets):
            sys.exit(f"render_pages: {len(sheets)} sheets but LibreOffice made {len(pages)} pages")
        for sheet, page in zip(sheets, pages, strict=True):
            target = out / f"analytics_workbook-{sheet.lower()}.png"
            with Image.open(page) as image:
                _save(
                    image.crop((0, 0, image.width, min(image.height, MAX_SHEET_HEIGHT_PX))), target
                )
            written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DOCS, help="folder for the PNGs")
    arguments = parser.parse_args()
    for path in render(arguments.out):
        print(path)


if __name__ == "__main__":
    main()
