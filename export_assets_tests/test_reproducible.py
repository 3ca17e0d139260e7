"""Reproducible reports: the same partition gives the same bytes, whenever and wherever it runs.

Two materializations of the same partition run at different wall-clock times (the second
starts in the next UTC second) and in different local time zones (``TZ`` moved 14 hours
between them), the two things a writer could leak into a file: openpyxl dates
``docProps/core.xml`` in UTC seconds, zip entries in local time, reportlab its info in local
time. The xlsx files must be byte-identical; the PDF may differ only in its footer stamp.
"""

from __future__ import annotations

import io
import os
import re
import time
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import AssetsDefinition, DagsterInstance, materialize
from openpyxl import load_workbook

from export_assets.defs.exports.proxy_list import proxy_list
from export_assets.defs.reports.analytics_workbook import analytics_workbook
from export_assets.defs.reports.health_report import health_report
from export_assets.lib.exports.codecs import ZIP_FIXED_DATE_TIME
from export_assets.lib.reports.pdf import Branding, render_health_report
from export_assets.lib.reports.window import week_figures
from export_assets.lib.sample import SampleDeployment
from export_assets.lib.sample.hostile import HOSTILE_STRINGS
from export_assets.lib.source.database import SourceSnapshot
from export_assets_tests.conftest import SAMPLE_END, configured, export_resources
from export_assets_tests.test_health_report import hostile_database, pdf_text

PARTITION = SAMPLE_END.isoformat()
STAMP = re.compile(r"Generated \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC")


@pytest.fixture
def another_time_and_place() -> Iterator[Callable[[], None]]:
    """Call it between two runs: the clock moves to the next UTC second and the local zone
    to UTC+14 (a POSIX TZ string: no tzdata needed). The zone is restored afterwards."""
    before = os.environ.get("TZ")

    def move() -> None:
        os.environ["TZ"] = "XXX-14"
        time.tzset()
        time.sleep(1.01 - time.time() % 1)  # under a second: into the next second

    yield move
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


def published_file(exports: Path, asset: str, extension: str) -> Path:
    return exports / asset / f"dt={PARTITION}" / f"{asset}-{PARTITION}{extension}"


def materialize_twice(
    asset: AssetsDefinition,
    database: Path,
    exports: Path,
    extension: str,
    move: Callable[[], None],
    instance: DagsterInstance,
    settings: dict[str, object] | None = None,
) -> tuple[bytes, bytes]:
    """The partition's data file after a first run and after a second, later one."""
    contents = []
    for run in range(2):
        if run:
            move()
        result = materialize(
            [configured(asset, settings)],
            partition_key=PARTITION,
            instance=instance,
            resources=export_resources(database, exports),
        )
        assert result.success
        contents.append(published_file(exports, asset.key.path[-1], extension).read_bytes())
    return contents[0], contents[1]


def test_analytics_workbook_is_byte_identical_across_runs(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    another_time_and_place: Callable[[], None],
) -> None:
    first, second = materialize_twice(
        analytics_workbook,
        sample_deployment.database,
        tmp_path / "exports",
        ".xlsx",
        another_time_and_place,
        instance,
    )
    assert first == second
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert {entry.date_time for entry in archive.infolist()} == {ZIP_FIXED_DATE_TIME}
        core = archive.read("docProps/core.xml").decode()
    # Dated the period's end (the partition's day), never the run's time.
    for name in ("created", "modified"):
        assert f">{PARTITION}T00:00:00Z</dcterms:{name}>" in core, core
    properties = load_workbook(io.BytesIO(first)).properties
    assert properties.modified == properties.created == datetime(2026, 11, 20)


def test_daily_xlsx_export_is_byte_identical_across_runs(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    another_time_and_place: Callable[[], None],
) -> None:
    first, second = materialize_twice(
        proxy_list,
        sample_deployment.database,
        tmp_path / "exports",
        ".xlsx",
        another_time_and_place,
        instance,
        settings={"format": "xlsx"},
    )
    assert first == second
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert {entry.date_time for entry in archive.infolist()} == {ZIP_FIXED_DATE_TIME}
        assert (
            ">1980-01-01T00:00:00Z</dcterms:modified>" in archive.read("docProps/core.xml").decode()
        )


def test_xlsx_keeps_carriage_returns_exactly(tmp_path: Path, instance: DagsterInstance) -> None:
    """``\\r\\n`` and a lone ``\\r`` in a daily xlsx export read back exactly: the sheet
    holds CR as ``&#13;``, which XML parsers do not normalise to LF."""
    database = hostile_database(tmp_path / "proxies.db")
    exports = tmp_path / "exports"
    result = materialize(
        [configured(proxy_list, {"format": "xlsx"})],
        partition_key="2026-11-20",
        instance=instance,
        resources=export_resources(database, exports),
    )
    assert result.success
    path = exports / "proxy_list" / "dt=2026-11-20" / "proxy_list-2026-11-20.xlsx"
    sheet = load_workbook(path).worksheets[0]
    header = [cell.value for cell in sheet[1]]
    sources = {row[header.index("source")] for row in sheet.iter_rows(min_row=2, values_only=True)}
    with_cr = [text for text in HOSTILE_STRINGS if "\r" in text]
    assert with_cr == ["carriage\rreturn only", "windows\r\nline ending"]
    assert set(with_cr) <= sources
    with zipfile.ZipFile(path) as archive:
        xml = archive.read("xl/worksheets/sheet1.xml").decode()
    assert "windows&#13;\nline ending" in xml
    assert "carriage&#13;return only" in xml


def test_health_report_differs_only_in_its_stamp(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    another_time_and_place: Callable[[], None],
) -> None:
    # Rendered with the same stamp at two times and places: the same bytes.
    stamp = datetime(2026, 11, 21, 6, 30, tzinfo=UTC)
    renders = []
    for run in range(2):
        if run:
            another_time_and_place()
        with SourceSnapshot(
            sample_deployment.database, busy_timeout_ms=1000, batch_rows=65_536
        ) as snapshot:
            week = week_figures(snapshot, SAMPLE_END, min_checks=20)
        renders.append(render_health_report(week, [], Branding(), generated_at=stamp)[0])
    assert renders[0] == renders[1]
    _, texts = pdf_text(renders[0])
    assert all("Generated 2026-11-21 06:30 UTC" in text for text in texts)
    # Through Dagster (the stamp is the run's time): the text differs in the stamp only.
    first, second = materialize_twice(
        health_report,
        sample_deployment.database,
        tmp_path / "exports",
        ".pdf",
        another_time_and_place,
        instance,
    )
    first_pages, first_texts = pdf_text(first)
    second_pages, second_texts = pdf_text(second)
    assert first_pages == second_pages
    assert [STAMP.sub("", t) for t in first_texts] == [STAMP.sub("", t) for t in second_texts]
    assert all(len(STAMP.findall(text)) == 1 for text in first_texts + second_texts)
