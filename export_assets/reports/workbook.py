"""The weekly analytics workbook (openpyxl): Summary, Daily (with a chart), Proxies, Errors.

Written in openpyxl's write-only mode, so the Proxies sheet of a 100,000-proxy pool streams
to a temporary file instead of building a cell object per value. Every sheet has one header
row (styled, frozen, with an auto-filter) and then data rows only: the export's reader
counts the data rows of every sheet. Numbers are numbers (percent and ms formats), days and
moments are Excel dates in UTC (the headers say so), and text is stored as text: any value
that a spreadsheet would run as a formula gets a leading ``'``. The same week gives the same
bytes: the file is dated the period's end (see ``spreadsheet.save_reproducible_xlsx``).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.chart import BarChart, LineChart, Reference
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from export_assets.exports.spreadsheet import (
    FORMULA_ESCAPE,
    FORMULA_START,
    save_reproducible_xlsx,
    xlsx_keeps_carriage_returns,
)
from export_assets.reports.provenance import MetricsExport
from export_assets.reports.window import ERROR_KINDS, WeekFigures
from export_assets.source.status import DEAD, HEALTHY, UNHEALTHY, UNKNOWN

PERCENT = "0.0%"
MS = '#,##0.0" ms"'
INTEGER = "#,##0"
DAY = "yyyy-mm-dd"
_FORMULA = re.compile(FORMULA_START)
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

SHEETS = ("Summary", "Daily", "Proxies", "Errors")
PROXY_HEADER = (
    "url", "protocol", "country", "source", "health_status (end of day)", "checks (7 days)",
    "successes (7 days)", "success rate (7 days)", "avg latency (7 days)",
)  # fmt: skip
DAILY_HEADER = (
    "day (UTC)", "checks", "successes", "success rate", "latency p50", "latency p95",
    "healthy (end of day)", "pool (end of day)", "healthy share",
)  # fmt: skip


def safe_text(value: str) -> str:
    """Text as an xlsx cell holds it safely: characters XML cannot hold removed, then a
    leading ``'`` when a spreadsheet would run it as a formula (line ends as in
    ``spreadsheet.excel_text``)."""
    value = _ILLEGAL.sub("", value)
    if not xlsx_keeps_carriage_returns():
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    return FORMULA_ESCAPE + value if _FORMULA.match(value) else value


def render_workbook(
    week: WeekFigures, exports: list[MetricsExport], *, title: str, accent: str
) -> tuple[bytes, int]:
    """The workbook's bytes and its number of data rows (every sheet, headers excluded)."""
    book = Workbook(write_only=True)
    book.properties.title = safe_text(title)
    look = _Look(accent.removeprefix("#"))
    rows = _summary(book.create_sheet("Summary"), week, exports, look)
    rows += _daily(book.create_sheet("Daily"), week, look)
    rows += _proxies(book.create_sheet("Proxies"), week, look)
    rows += _errors(book.create_sheet("Errors"), week, look)
    buffer = io.BytesIO()
    # Reproducible: the document is dated the period's end, never the run's time.
    save_reproducible_xlsx(book, buffer, datetime.combine(week.end, datetime.min.time()))
    return buffer.getvalue(), rows


class _Look:
    def __init__(self, accent: str) -> None:
        self.header_font = Font(bold=True, color="FFFFFF")
        self.header_fill = PatternFill("solid", fgColor=accent)
        self.header_alignment = Alignment(vertical="center", wrap_text=True)


def _start(
    sheet: WriteOnlyWorksheet,
    header: Sequence[str],
    widths: Sequence[float],
    look: _Look,
    rows: int,
) -> None:
    """Column widths, frozen header, auto-filter over the rows to come, then the header."""
    for index, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(header))}{rows + 1}"
    cells = []
    for name in header:
        cell = WriteOnlyCell(sheet, name)
        cell.font, cell.fill, cell.alignment = (
            look.header_font,
            look.header_fill,
            look.header_alignment,
        )
        cells.append(cell)
    sheet.append(cells)


def _cell(sheet: WriteOnlyWorksheet, value: Any, number_format: str | None = None) -> Any:
    if isinstance(value, str):
        return safe_text(value)
    if value is None or number_format is None:
        return value
    cell = WriteOnlyCell(sheet, value)
    cell.number_format = number_format
    return cell


def _summary(
    sheet: WriteOnlyWorksheet, week: WeekFigures, exports: list[MetricsExport], look: _Look
) -> int:
    now, before = week.current, week.previous
    lines: list[tuple[str, Any, Any, str | None]] = [
        ("period start (UTC)", now.start, before.start, DAY),
        ("period end (UTC)", now.end, before.end, DAY),
        ("pool size (end of period)", now.pool, before.pool, INTEGER),
    ]
    for status in (HEALTHY, UNHEALTHY, DEAD, UNKNOWN):
        lines.append((f"{status} proxies", now.statuses[status], before.statuses[status], INTEGER))
        lines.append((f"{status} share", now.share(status), before.share(status), PERCENT))
    lines += [
        ("new proxies", now.new, before.new, INTEGER),
        ("removed proxies", now.removed, before.removed, INTEGER),
        ("checks run", now.checks, before.checks, INTEGER),
        ("success rate", now.success_rate, before.success_rate, PERCENT),
        ("latency p50", now.latency_p50_ms, before.latency_p50_ms, MS),
        ("latency p95", now.latency_p95_ms, before.latency_p95_ms, MS),
    ]
    for export in exports:
        lines.append(
            (f"proxy_metrics manifest sha256 {export.day.isoformat()}",
             export.manifest_sha256 or export.status, None, None)
        )  # fmt: skip
    _start(
        sheet,
        ("metric", "this week", "previous week", "change"),
        (44, 18, 18, 14),
        look,
        len(lines),
    )
    for name, current, previous, number_format in lines:
        change = _change(current, previous, number_format)
        sheet.append(
            [
                safe_text(name),
                _cell(sheet, current, number_format),
                _cell(sheet, previous, number_format),
                _cell(sheet, change, PERCENT if number_format == PERCENT else number_format),
            ]
        )
    return len(lines)


def _change(current: Any, previous: Any, number_format: str | None) -> Any:
    if isinstance(current, date) or not isinstance(current, int | float):
        return None
    if not isinstance(previous, int | float):
        return None
    return current - previous


def _daily(sheet: WriteOnlyWorksheet, week: WeekFigures, look: _Look) -> int:
    _start(sheet, DAILY_HEADER, (14, 11, 11, 13, 13, 13, 16, 14, 13), look, len(week.days))
    for day in week.days:
        sheet.append(
            [
                _cell(sheet, day.day, DAY),
                _cell(sheet, day.checks, INTEGER),
                _cell(sheet, day.successes, INTEGER),
                _cell(sheet, day.success_rate, PERCENT),
                _cell(sheet, day.latency_p50_ms, MS),
                _cell(sheet, day.latency_p95_ms, MS),
                _cell(sheet, day.healthy, INTEGER),
                _cell(sheet, day.pool, INTEGER),
                _cell(sheet, day.healthy_share, PERCENT),
            ]
        )
    last = len(week.days) + 1
    # Success rate as bars on the left axis, p95 latency as a line on the right axis.
    rate = BarChart()
    rate.title = "Success rate and p95 latency per day"
    rate.y_axis.title = "success rate"
    rate.y_axis.number_format = "0%"
    rate.y_axis.scaling.min = 0
    rate.y_axis.scaling.max = 1
    rate.y_axis.majorGridlines = None
    rate.add_data(Reference(sheet, min_col=4, min_row=1, max_row=last), titles_from_data=True)
    rate.set_categories(Reference(sheet, min_col=1, min_row=2, max_row=last))
    rate.series[0].graphicalProperties.solidFill = look.header_fill.fgColor.rgb[-6:]
    latency = LineChart()
    latency.add_data(Reference(sheet, min_col=6, min_row=1, max_row=last), titles_from_data=True)
    latency.y_axis.axId = 200
    latency.y_axis.title = "p95 latency (ms)"
    latency.y_axis.crosses = "max"
    latency.series[0].graphicalProperties.line.solidFill = "DD6B20"
    latency.series[0].graphicalProperties.line.width = 28_000
    rate += latency
    rate.x_axis.number_format = "mm-dd"
    rate.height, rate.width = 9, 20
    sheet.add_chart(rate, "K2")
    return len(week.days)


def _proxies(sheet: WriteOnlyWorksheet, week: WeekFigures, look: _Look) -> int:
    _start(sheet, PROXY_HEADER, (42, 10, 10, 24, 16, 13, 13, 13, 14), look, len(week.proxies))
    for proxy in week.proxies:
        sheet.append(
            [
                safe_text(proxy.url),
                safe_text(proxy.protocol),
                safe_text(proxy.country),
                safe_text(proxy.source),
                proxy.health_status,
                proxy.checks,
                proxy.successes,
                _cell(sheet, proxy.success_rate, PERCENT),
                _cell(sheet, proxy.latency_avg_ms, MS),
            ]
        )
    return len(week.proxies)


def _errors(sheet: WriteOnlyWorksheet, week: WeekFigures, look: _Look) -> int:
    header = ("day (UTC)", *(f"errors {kind}" for kind in ERROR_KINDS), "failures")
    _start(sheet, header, (14, *(12 for _ in ERROR_KINDS), 11), look, len(week.days))
    for day in week.days:
        counts = [day.errors[kind] for kind in ERROR_KINDS]
        sheet.append([_cell(sheet, day.day, DAY), *counts, day.checks - day.successes])
    return len(week.days)
