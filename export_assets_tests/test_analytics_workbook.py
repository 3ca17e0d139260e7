"""``analytics_workbook``: sheets, headers and typed cells, checked against the exports."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize
from openpyxl import load_workbook

from export_assets.defs.operations.failures import error_message, user_error
from export_assets.defs.reports.analytics_workbook import analytics_workbook
from export_assets.lib.exports.readers import count_rows
from export_assets.lib.reports.workbook import DAILY_HEADER, PROVENANCE_HEADER, PROXY_HEADER
from export_assets.lib.sample.hostile import HOSTILE_STRINGS
from export_assets_tests.conftest import request_config, requested
from export_assets_tests.test_health_report import handmade_resources, hostile_database
from export_assets_tests.weekly_reports import (  # noqa: F401 (a fixture)
    EXPORTED_DAYS,
    REPORT_DAY,
    PublishedWeek,
    expected_period,
    published,
    published_week,
)


def test_workbook_is_published_like_every_export(published_week: PublishedWeek) -> None:  # noqa: F811
    path, manifest = published(published_week.exports, "analytics_workbook", REPORT_DAY, ".xlsx")
    data = path.read_bytes()
    assert manifest["format"] == "xlsx"
    assert manifest["compression"] == "none"
    assert manifest["files"] == [
        {
            "path": path.name,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "rows": count_rows("xlsx", "none", io.BytesIO(data)),
        }
    ]
    assert published_week.result_checks
    assert all(published_week.result_checks)


def test_sheets_headers_and_layout(published_week: PublishedWeek) -> None:  # noqa: F811
    path, _ = published(published_week.exports, "analytics_workbook", REPORT_DAY, ".xlsx")
    book = load_workbook(path)
    assert book.sheetnames == ["Summary", "Daily", "Proxies", "Errors", "Provenance"]
    headers = {name: [c.value for c in book[name][1]] for name in book.sheetnames}
    assert headers["Summary"] == ["metric", "this week", "previous week", "change"]
    assert headers["Daily"] == list(DAILY_HEADER)
    assert "day (UTC)" in headers["Daily"]
    assert headers["Proxies"] == list(PROXY_HEADER)
    assert headers["Errors"][0] == "day (UTC)"
    assert headers["Errors"][-1] == "failures"
    assert headers["Provenance"] == list(PROVENANCE_HEADER)
    for sheet in book.worksheets:
        assert sheet.freeze_panes == "A2", sheet.title
        assert sheet[1][0].font.b
        assert sheet.column_dimensions["A"].width > 10
    # The chart of the Daily sheet, below its table: success rate and healthy share (left
    # axis) and p95 latency (right axis), as straight lines.
    with zipfile.ZipFile(path) as archive:
        charts = [n for n in archive.namelist() if n.startswith("xl/charts/chart")]
        assert len(charts) == 1
        chart = archive.read(charts[0]).decode()
    assert chart.count("<lineChart>") == 2
    assert "<barChart>" not in chart
    for part in ("'Daily'!$D$2:$D$8", "'Daily'!$I$2:$I$8", "'Daily'!$F$2:$F$8"):
        assert part in chart, part
    assert '<smooth val="1"' not in chart


def test_numbers_are_numbers_and_dates_are_dates(published_week: PublishedWeek) -> None:  # noqa: F811
    path, _ = published(published_week.exports, "analytics_workbook", REPORT_DAY, ".xlsx")
    book = load_workbook(path)
    daily = list(book["Daily"].iter_rows(min_row=2))
    assert [row[0].value for row in daily] == [
        datetime.combine(REPORT_DAY - timedelta(days=6 - n), datetime.min.time()) for n in range(7)
    ]
    for row in daily:
        assert row[0].is_date
        assert row[0].number_format == "yyyy-mm-dd"
        assert isinstance(row[1].value, int)
        assert isinstance(row[7].value, int)
        if row[1].value:
            assert isinstance(row[3].value, float)
            assert row[3].number_format == "0.0%"
            assert isinstance(row[5].value, float)
            assert row[5].number_format.endswith('" ms"')
    summary = {row[0].value: row for row in book["Summary"].iter_rows(min_row=2)}
    now = expected_period(published_week.database, REPORT_DAY - timedelta(days=6), REPORT_DAY)
    assert summary["checks run"][1].value == now.checks
    assert summary["pool size (end of period)"][1].value == now.pool
    assert summary["healthy proxies"][1].value == now.statuses["healthy"]
    assert summary["success rate"][1].value == now.successes / now.checks
    assert summary["latency p95"][1].value == pytest.approx(now.p95, rel=1e-12)
    assert summary["period end (UTC)"][1].is_date


def test_row_counts_match_proxy_list_and_proxy_metrics(published_week: PublishedWeek) -> None:  # noqa: F811
    path, _ = published(published_week.exports, "analytics_workbook", REPORT_DAY, ".xlsx")
    book = load_workbook(path)
    pool_file, pool_manifest = published(
        published_week.exports, "proxy_list", REPORT_DAY, ".csv.gz"
    )
    proxies = list(book["Proxies"].iter_rows(min_row=2, values_only=True))
    assert len(proxies) == pool_manifest["total_rows"]
    with gzip.open(pool_file, "rt", newline="") as stream:
        pool = {row["url"]: row for row in csv.DictReader(stream)}
    assert {row[0] for row in proxies} == set(pool)
    for row in proxies:
        assert row[4] == pool[str(row[0])]["health_status"]
        assert isinstance(row[5], int)
        assert isinstance(row[6], int)
    daily = {row[0].date(): row for row in book["Daily"].iter_rows(min_row=2, values_only=True)}
    for day in EXPORTED_DAYS:
        metrics_file, _ = published(published_week.exports, "proxy_metrics", day, ".csv.gz")
        with gzip.open(metrics_file, "rt", newline="") as stream:
            pool_row = next(r for r in csv.DictReader(stream) if r["scope"] == "pool")
        assert daily[day][1] == int(pool_row["checks"])
        assert daily[day][2] == int(pool_row["successes"])
        assert daily[day][5] == pytest.approx(float(pool_row["latency_p95_ms"]), rel=1e-12)
    errors = list(book["Errors"].iter_rows(min_row=2, values_only=True))
    assert len(errors) == 7
    assert all(row[-1] == daily[row[0].date()][1] - daily[row[0].date()][2] for row in errors)


def test_hostile_strings_stay_text(tmp_path: Path, instance: DagsterInstance) -> None:
    database = hostile_database(tmp_path / "proxies.db")
    exports = tmp_path / "exports"
    result = materialize(
        [analytics_workbook],
        partition_key="2026-11-20",
        instance=instance,
        resources=handmade_resources(database, exports),
    )
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    path = exports / "analytics_workbook" / "dt=2026-11-20" / "analytics_workbook-2026-11-20.xlsx"
    book = load_workbook(path)
    sources = [row[3].value for row in book["Proxies"].iter_rows(min_row=2)]
    assert len(sources) == len(HOSTILE_STRINGS)
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            assert all(cell.data_type != "f" for cell in row)
    by_text = {value: value for value in sources}
    assert by_text["'" + HOSTILE_STRINGS[0]] == "'" + HOSTILE_STRINGS[0]  # =HYPERLINK(...)
    assert "'-2+3" in by_text
    assert "'+cmd|' /C calc'!A0" in by_text
    assert "</script><script>alert('x')</script>" in by_text
    assert "control  bell  escape [31mred[0m delete \x7f end" in by_text  # XML-illegal removed


def test_bad_accent_colour_is_a_clear_error(tmp_path: Path, instance: DagsterInstance) -> None:
    database = hostile_database(tmp_path / "proxies.db")
    exports = tmp_path / "exports"
    result = materialize(
        [requested(analytics_workbook)],
        partition_key="2026-11-20",
        instance=instance,
        resources=handmade_resources(database, exports),
        raise_on_error=False,
        run_config=request_config(analytics_workbook, {"accent_color": "#12345"}),
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None
    assert error_message(user_error(failure)) == (
        "accent_color '#12345' is not a colour: write it as #RRGGBB, e.g. #2b6cb0; nothing was "
        "written"
    )
    assert not exports.exists() or not any(p.is_file() for p in exports.rglob("*"))
