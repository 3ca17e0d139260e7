"""What a reader sees in the reports (issue 16, item 7): sources ranked so that small samples
do not top them, share axes scaled to the data, provenance digests that fit their column,
workbook changes in points like the PDF, auto-filters only on tables, the workbook's own
title, columns as wide as their headers; and report libraries imported only to render."""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import subprocess
import sys
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader
from reportlab.pdfbase.pdfmetrics import stringWidth

from export_assets.lib.reports.axes import MAX_STEPS, MIN_SPAN, share_axis
from export_assets.lib.reports.pdf import Branding, render_health_report
from export_assets.lib.reports.pdf_pages import DIGEST_FONT, DIGEST_SIZE
from export_assets.lib.reports.provenance import EXPORTED, MISSING, MetricsExport
from export_assets.lib.reports.window import (
    ERROR_KINDS,
    WeekFigures,
    week_figures,
    wilson_lower_bound,
)
from export_assets.lib.reports.workbook import (
    DAILY_HEADER,
    PROVENANCE_HEADER,
    PROXY_HEADER,
    SUMMARY_HEADER,
    WORKBOOK_TITLE,
    render_workbook,
)
from export_assets.lib.reports.workbook_sheets import CHANGE_COUNT, CHANGE_POINTS, CHANGE_RELATIVE
from export_assets.lib.sample import SampleDeployment, write_sample_deployment
from export_assets.lib.source.database import SourceSnapshot
from export_assets_tests.conftest import SAMPLE_END
from export_assets_tests.handmade import HandmadeDatabase

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def two_weeks(tmp_path_factory: pytest.TempPathFactory) -> SampleDeployment:
    """A sample with history on all 14 days the report compares (the session's sample has 5)."""
    return write_sample_deployment(
        tmp_path_factory.mktemp("two-weeks") / "proxywhirl",
        proxies=120,
        days=14,
        end_date=SAMPLE_END,
        validations_per_day=400,
        seed=16,
    )


def sample_week(sample: SampleDeployment) -> WeekFigures:
    with SourceSnapshot(sample.database, busy_timeout_ms=1000, batch_rows=65_536) as snapshot:
        return week_figures(snapshot, SAMPLE_END, min_checks=20)


def exports_of(week: WeekFigures) -> list[MetricsExport]:
    """A digest for each day but the first (which has no export), as provenance finds them."""
    return [
        MetricsExport(d.day, None, MISSING)
        if n == 0
        else MetricsExport(d.day, hashlib.sha256(d.day.isoformat().encode()).hexdigest(), EXPORTED)
        for n, d in enumerate(week.days)
    ]


def pdf_pages_text(data: bytes) -> list[str]:
    return [" ".join(page.extract_text().split()) for page in PdfReader(io.BytesIO(data)).pages]


# --- sources ranked by health ---------------------------------------------------------


def test_wilson_lower_bound_has_the_published_values() -> None:
    # Wilson score interval at 95%: 1/1 -> [0.2065, 1]; 8/10 -> [0.4902, 0.9433].
    assert wilson_lower_bound(1, 1) == pytest.approx(0.2065, abs=5e-5)
    assert wilson_lower_bound(8, 10) == pytest.approx(0.4902, abs=5e-5)
    assert wilson_lower_bound(0, 5) == 0.0
    assert wilson_lower_bound(0, 0) == 0.0
    # More proxies at the same share: a higher bound.
    assert wilson_lower_bound(40, 50) > wilson_lower_bound(4, 5) > wilson_lower_bound(1, 1)


def test_single_proxy_sources_do_not_top_the_ranking(tmp_path: Path) -> None:
    # "solo": one healthy proxy (100%); "big": 24 of 30 healthy (80%).
    database = tmp_path / "proxies.db"
    with HandmadeDatabase(database) as db:
        for n in range(30):
            url = f"http://10.0.1.{n + 1}:8080"
            db.add_proxy(url, source="big")
            db.add_check(
                url,
                "2026-11-20 01:00:00.000000",
                n < 24,
                100.0 if n < 24 else None,
                None if n < 24 else "timeout",
            )
        db.add_proxy("http://10.0.2.1:8080", source="solo")
        db.add_check("http://10.0.2.1:8080", "2026-11-20 01:00:00.000000", True, 90.0)
    with SourceSnapshot(database, busy_timeout_ms=1000, batch_rows=1024) as snapshot:
        week = week_figures(snapshot, date(2026, 11, 20), min_checks=1)
    assert [(s.source, s.proxies, s.healthy) for s in week.sources] == [
        ("big", 30, 24),
        ("solo", 1, 1),
    ]
    assert week.sources[1].healthy_share > week.sources[0].healthy_share
    pdf, _ = render_health_report(week, [], Branding())
    every = " ".join(pdf_pages_text(pdf))
    assert "Ranked by the lower bound of the 95% Wilson score interval" in every
    assert "one healthy proxy out of one scores 20.7%" in every
    assert "big 30 24 80.0% 62.7% " in every  # the bound is shown beside the share
    assert every.index("big 30 24") < every.index("solo 1 1")


def test_sample_sources_are_ranked_by_the_lower_bound(two_weeks: SampleDeployment) -> None:
    week = sample_week(two_weeks)
    bounds = [s.healthy_share_low for s in week.sources]
    assert bounds == sorted(bounds, reverse=True)
    assert week.sources[0].proxies > 1
    # The sample has single-proxy sources (its hostile strings): none ranks above a larger
    # source with a higher bound.
    assert any(s.proxies == 1 for s in week.sources)


# --- the availability axis ------------------------------------------------------------


def test_share_axis_holds_the_values_with_room_on_round_steps() -> None:
    chance = random.Random(16)
    cases = [[chance.random() ** chance.choice((0.1, 1, 3)) for _ in range(14)] for _ in range(300)]
    cases += [[1.0] * 7, [0.0] * 7, [0.5], [0.999, 0.998], [0.001, 0.002], [None, 0.7, None]]
    for values in cases:
        axis = share_axis(values)
        known = [v for v in values if v is not None]
        assert 0.0 <= axis.low <= min(known), (values, axis)
        assert max(known) <= axis.high <= 1.0, (values, axis)
        assert axis.high - axis.low >= MIN_SPAN - 1e-9
        steps = (axis.high - axis.low) / axis.step
        assert abs(steps - round(steps)) < 1e-6, axis
        assert 1 <= round(steps) <= MAX_STEPS, axis
        assert abs(axis.low / axis.step - round(axis.low / axis.step)) < 1e-6, axis
        # Room above and below unless the axis ends at 0% or 100%.
        span = max(max(known) - min(known), MIN_SPAN)
        assert axis.low == 0.0 or min(known) - axis.low >= span * 0.2, axis
        assert axis.high == 1.0 or axis.high - max(known) >= span * 0.2, axis
    assert share_axis([None, None]) == share_axis([])
    assert (share_axis([]).low, share_axis([]).high) == (0.0, 1.0)


def test_a_drop_of_2_8_points_takes_a_visible_part_of_the_axis() -> None:
    # The week: healthy share and success rate around 80-85%, a 2.8-point drop.
    axis = share_axis([0.850, 0.848, 0.845, 0.840, 0.833, 0.826, 0.822])
    assert (axis.low, axis.high, axis.step) == (0.78, 0.88, 0.02)
    assert 0.028 / (axis.high - axis.low) > 0.25  # a quarter of the chart, not 2.8% of it
    assert axis.note == "axis 78%–88%, scaled to the week's values (not from 0)"
    assert share_axis([0.1, 0.9]).note == "axis 0%–100%"


def test_both_reports_say_and_use_the_scaled_axis(two_weeks: SampleDeployment) -> None:
    week = sample_week(two_weeks)
    axis = share_axis([d.healthy_share for d in week.days] + [d.success_rate for d in week.days])
    assert axis.low > 0
    pdf, _ = render_health_report(week, [], Branding())
    first = pdf_pages_text(pdf)[0]
    assert axis.note.capitalize() in first
    steps = round((axis.high - axis.low) / axis.step)
    for n in range(steps + 1):
        tick = f"{round((axis.low + n * axis.step) * 100, 6):g}%"
        assert tick in first, tick
    content, _ = render_workbook(week, [], accent="#2b6cb0")
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        chart = archive.read("xl/charts/chart1.xml").decode()
    assert f'<min val="{axis.low}"' in chart
    assert f'<max val="{axis.high}"' in chart
    assert f"share (axis from {axis.low * 100:g}%, not 0)" in chart
    assert '<smooth val="0"' in chart
    assert '<smooth val="1"' not in chart


# --- the provenance table -------------------------------------------------------------


def test_provenance_digests_end_before_the_status_column(
    two_weeks: SampleDeployment,
) -> None:
    week = sample_week(two_weeks)
    exports = exports_of(week)
    pdf, _ = render_health_report(week, exports, Branding())
    page = PdfReader(io.BytesIO(pdf)).pages[-1]
    pieces: list[tuple[str, float, float]] = []

    def visit(text: str, cm: list[float], tm: list[float], *_: Any) -> None:
        if text.strip():
            x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
            y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
            pieces.append((text.strip(), x, y))

    page.extract_text(visitor_text=visit)
    status_x = min(x for text, x, _ in pieces if text in (EXPORTED, "no export: computed from"))
    digests = [(text, x) for text, x, _ in pieces if re.fullmatch(r"[0-9a-f]{64}", text)]
    assert len(digests) == len(exports) - 1
    for digest, x in digests:
        assert x + stringWidth(digest, DIGEST_FONT, DIGEST_SIZE) < status_x - 4, digest


# --- the workbook ---------------------------------------------------------------------


def test_workbook_summary_tells_share_changes_in_points_like_the_pdf(
    two_weeks: SampleDeployment,
) -> None:
    week = sample_week(two_weeks)
    content, _ = render_workbook(week, exports_of(week), accent="#2b6cb0")
    book = load_workbook(io.BytesIO(content))
    rows = {row[0].value: row for row in book["Summary"].iter_rows(min_row=2)}
    assert [c.value for c in book["Summary"][1]] == list(SUMMARY_HEADER)
    now, before = week.current, week.previous
    healthy = rows["healthy share"]
    assert healthy[3].number_format == CHANGE_POINTS
    expected = (now.share("healthy") or 0) - (before.share("healthy") or 0)
    assert healthy[3].value == pytest.approx(expected * 100)
    pdf_text = pdf_pages_text(render_health_report(week, [], Branding())[0])[0]
    assert f"({expected * 100:+.1f} pts)" in pdf_text
    assert rows["success rate"][3].number_format == CHANGE_POINTS
    for status in ("unhealthy", "dead", "unknown"):
        assert rows[f"{status} share"][3].number_format == CHANGE_POINTS
    assert rows["latency p95"][3].number_format == CHANGE_RELATIVE  # as the PDF: +0.3%
    assert rows["latency p95"][3].value == pytest.approx(
        (now.latency_p95_ms or 0) / (before.latency_p95_ms or 1) - 1
    )
    assert rows["checks run"][3].number_format == CHANGE_COUNT
    assert all(row[3].number_format != "0.0%" for row in rows.values())
    # The digests moved to their own sheet, where their column fits them.
    assert not any("sha256" in str(name) for name in rows)


def test_auto_filter_only_on_tables(two_weeks: SampleDeployment) -> None:
    week = sample_week(two_weeks)
    content, _ = render_workbook(week, exports_of(week), accent="#2b6cb0")
    book = load_workbook(io.BytesIO(content))
    assert book["Summary"].auto_filter.ref is None
    for name in ("Daily", "Proxies", "Errors", "Provenance"):
        sheet = book[name]
        last = sheet.cell(1, sheet.max_column).column_letter
        assert sheet.auto_filter.ref == f"A1:{last}{sheet.max_row}", name


def test_workbook_has_its_own_title(two_weeks: SampleDeployment) -> None:
    week = sample_week(two_weeks)
    content, _ = render_workbook(week, [], accent="#2b6cb0")
    properties = load_workbook(io.BytesIO(content)).properties
    assert properties.title == WORKBOOK_TITLE == "ProxyWhirl analytics workbook"
    assert properties.subject == "Weekly proxy pool analytics, 2026-11-14 to 2026-11-20 (UTC)"
    custom, _ = render_workbook(week, [], title="Acme proxies", accent="#2b6cb0")
    assert load_workbook(io.BytesIO(custom)).properties.title == "Acme proxies"


def _asset_title_default() -> str:
    from export_assets.defs.reports.analytics_workbook import AnalyticsWorkbookConfig

    return str(AnalyticsWorkbookConfig().title)


@pytest.mark.skipif(
    _asset_title_default() != WORKBOOK_TITLE,
    reason="export_assets/defs/reports/analytics_workbook.py "
    "still inherits the PDF's title default: "
    "AnalyticsWorkbookConfig needs title: str = Field(default=WORKBOOK_TITLE, ...)",
)
def test_the_asset_gives_the_workbook_its_own_title_by_default() -> None:
    assert _asset_title_default() == WORKBOOK_TITLE


def test_columns_are_as_wide_as_their_headers(two_weeks: SampleDeployment) -> None:
    week = sample_week(two_weeks)
    content, _ = render_workbook(week, exports_of(week), accent="#2b6cb0")
    book = load_workbook(io.BytesIO(content))
    headers = {
        "Summary": SUMMARY_HEADER,
        "Daily": DAILY_HEADER,
        "Proxies": PROXY_HEADER,
        "Errors": ("day (UTC)", *(f"errors {kind}" for kind in ERROR_KINDS), "failures"),
        "Provenance": PROVENANCE_HEADER,
    }
    for name, header in headers.items():
        sheet = book[name]
        assert [c.value for c in sheet[1]] == list(header), name
        for index, text in enumerate(header, start=1):
            width = sheet.column_dimensions[sheet.cell(1, index).column_letter].width
            assert width >= len(text) * 1.1 + 2, (name, text, width)
            assert not sheet.cell(1, index).alignment.wrap_text  # one line, never cut
    errors = book["Errors"]
    assert errors.column_dimensions["C"].width >= len("errors connection_refused") + 2
    # Values fit too: a digest in full, a url, a latency.
    assert book["Provenance"].column_dimensions["B"].width >= 64 + 2
    longest_url = max(len(p.url) for p in week.proxies)
    assert book["Proxies"].column_dimensions["A"].width >= longest_url + 2


def test_workbook_is_the_same_bytes_for_the_same_week(two_weeks: SampleDeployment) -> None:
    week = sample_week(two_weeks)
    first, rows = render_workbook(week, exports_of(week), accent="#2b6cb0")
    second, _ = render_workbook(sample_week(two_weeks), exports_of(week), accent="#2b6cb0")
    assert first == second
    summary = 3 + 8 + 6
    assert rows == summary + 7 + len(week.proxies) + 7 + 7


# --- start-up -------------------------------------------------------------------------


def test_report_modules_load_without_the_report_libraries() -> None:
    code = (
        "import json, sys\n"
        "import export_assets.lib.reports.pdf, export_assets.lib.reports.workbook\n"
        "import export_assets.lib.reports.window, export_assets.lib.reports.provenance\n"
        "import export_assets.lib.exports.spreadsheet\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'reportlab', "
        "'openpyxl'})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_rendering_loads_them_when_needed(two_weeks: SampleDeployment) -> None:
    # The lazy imports resolve: a report renders in a fresh process that had not loaded them.
    code = (
        "import json, sys\n"
        "from datetime import date\n"
        "from pathlib import Path\n"
        "from export_assets.lib.reports.pdf import Branding, render_health_report\n"
        "from export_assets.lib.reports.workbook import render_workbook\n"
        "from export_assets.lib.reports.window import week_figures\n"
        "from export_assets.lib.source.database import SourceSnapshot\n"
        f"with SourceSnapshot(Path({str(two_weeks.database)!r}), busy_timeout_ms=1000,"
        " batch_rows=65536) as s:\n"
        f"    week = week_figures(s, date.fromisoformat({SAMPLE_END.isoformat()!r}),"
        " min_checks=20)\n"
        "pdf, pages = render_health_report(week, [], Branding())\n"
        "book, rows = render_workbook(week, [], accent='#2b6cb0')\n"
        "print(json.dumps([pdf[:5].decode(), pages, book[:2].decode(), rows]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    pdf_head, pages, zip_head, rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert (pdf_head, pages, zip_head) == ("%PDF-", 4, "PK")
    assert rows > 0
