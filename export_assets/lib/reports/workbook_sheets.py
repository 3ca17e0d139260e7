"""The analytics workbook's sheets, written with openpyxl (imported only when rendering).

Written in openpyxl's write-only mode, so the Proxies sheet of a 100,000-proxy pool streams
to a temporary file instead of building a cell object per value. Every sheet has one styled,
frozen header row; the sheets that are tables (``TABLE_SHEETS``) get an auto-filter over
their rows, the key/value Summary none. Columns are as wide as their header or their
longest value (within a cap), so no header is cut. Numbers are numbers (percent, points and
ms formats), days are Excel dates in UTC (the headers say so), and text is stored as text:
any value a spreadsheet would run as a formula gets a leading ``'``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.chart import LineChart, Reference
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from export_assets.lib.exports.spreadsheet import save_reproducible_xlsx
from export_assets.lib.reports.axes import share_axis
from export_assets.lib.reports.provenance import MetricsExport
from export_assets.lib.reports.window import ERROR_KINDS, WeekFigures
from export_assets.lib.reports.workbook import (
    DAILY_HEADER,
    PROVENANCE_HEADER,
    PROXY_HEADER,
    SUMMARY_HEADER,
    TABLE_SHEETS,
    safe_text,
)
from export_assets.lib.source.status import DEAD, HEALTHY, UNHEALTHY, UNKNOWN

PERCENT = "0.0%"
MS = '#,##0.0" ms"'
INTEGER = "#,##0"
DAY = "yyyy-mm-dd"
# Changes, signed; a change of a share is in percentage points, as in the PDF.
CHANGE_COUNT = "+#,##0;-#,##0;0"
CHANGE_POINTS = '+0.0" pts";-0.0" pts";0.0" pts"'
CHANGE_RELATIVE = "+0.0%;-0.0%;0.0%"

FONT = "Calibri"  # the workbook's default font: headers use it too
MAX_WIDTH = 50.0
"""The widest column of free text: a longer value (a hostile source name) shows its start."""
HEADER_HEIGHT = 20.0
# Excel measures a column in widths of the digit 0 of the default font; a bold header letter
# is wider, and a cell needs some room either side.
_BOLD = 1.1
_TEXT = 1.05  # some letters are wider than the digit 0
_ROOM = 3.0
LATENCY_COLOUR = "805AD5"
SUCCESS_COLOUR = "DD6B20"  # the PDF's success-rate colour


def render(
    week: WeekFigures, exports: list[MetricsExport], *, title: str, accent: str
) -> tuple[bytes, int]:
    """The workbook's bytes and its number of data rows (every sheet, headers excluded)."""
    book = Workbook(write_only=True)
    book.properties.title = safe_text(title)
    book.properties.subject = (
        f"Weekly proxy pool analytics, {week.start.isoformat()} to {week.end.isoformat()} (UTC)"
    )
    look = _Look(accent.removeprefix("#"))
    rows = _summary(book.create_sheet("Summary"), week, look)
    rows += _daily(book.create_sheet("Daily"), week, look)
    rows += _proxies(book.create_sheet("Proxies"), week, look)
    rows += _errors(book.create_sheet("Errors"), week, look)
    rows += _provenance(book.create_sheet("Provenance"), exports, look)
    buffer = io.BytesIO()
    # Reproducible: the document is dated the period's end, never the run's time.
    save_reproducible_xlsx(book, buffer, datetime.combine(week.end, datetime.min.time()))
    return buffer.getvalue(), rows


class _Look:
    def __init__(self, accent: str) -> None:
        self.accent = accent
        self.header_font = Font(name=FONT, size=11, bold=True, color="FFFFFF")
        self.header_fill = PatternFill("solid", fgColor=accent)
        self.header_alignment = Alignment(vertical="center")
        # Over a column of numbers or days the header stands where the values end.
        self.header_right = Alignment(vertical="center", horizontal="right")


def shown(value: Any, number_format: str | None) -> str:
    """About what a spreadsheet shows for ``value`` in ``number_format`` (for widths)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return max(value.split("\n"), key=len)
    if isinstance(value, date):
        return "0000-00-00"
    return _SHOWN.get(number_format or "", str)(value)


_SHOWN: dict[str, Callable[[Any], str]] = {
    PERCENT: lambda v: f"{v * 100:.1f}%",
    MS: lambda v: f"{v:,.1f} ms",
    INTEGER: lambda v: f"{v:,}",
    CHANGE_COUNT: lambda v: f"{v:+,}",
    CHANGE_POINTS: lambda v: f"{v:+.1f} pts",
    CHANGE_RELATIVE: lambda v: f"{v * 100:+.1f}%",
}


def column_width(header: str, values: Iterable[str], cap: float = MAX_WIDTH) -> float:
    """A column as wide as its bold header or its longest shown value, at most ``cap``."""
    longest = max((len(v) for v in values), default=0)
    return min(max(math.ceil(len(header) * _BOLD), math.ceil(longest * _TEXT)) + _ROOM, cap)


def _start(
    sheet: WriteOnlyWorksheet,
    header: Sequence[str],
    columns: Sequence[Iterable[str]],
    look: _Look,
    rows: int,
    numeric: Sequence[bool] = (),
    cap: float = MAX_WIDTH,
) -> None:
    """Column widths, frozen header, the auto-filter of a table, then the header row
    (right-aligned over the ``numeric`` columns)."""
    for index, (name, values) in enumerate(zip(header, columns, strict=True), start=1):
        sheet.column_dimensions[get_column_letter(index)].width = column_width(name, values, cap)
    sheet.freeze_panes = "A2"
    if sheet.title in TABLE_SHEETS:
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(header))}{rows + 1}"
    sheet.row_dimensions[1].height = HEADER_HEIGHT
    cells = []
    for index, name in enumerate(header):
        cell = WriteOnlyCell(sheet, name)
        right = index < len(numeric) and numeric[index]
        cell.font, cell.fill, cell.alignment = (
            look.header_font,
            look.header_fill,
            look.header_right if right else look.header_alignment,
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


@dataclass(frozen=True)
class _Line:
    """A Summary row: a metric this week and the week before, and how its change is told."""

    name: str
    current: Any
    previous: Any
    number_format: str

    @property
    def change(self) -> tuple[float | int | None, str | None]:
        """The change and its format: counts signed, shares in points, latencies relative."""
        now, before = self.current, self.previous
        if not isinstance(now, int | float) or not isinstance(before, int | float):
            return None, None
        if self.number_format == PERCENT:
            return (now - before) * 100, CHANGE_POINTS
        if self.number_format == MS:
            return ((now - before) / before, CHANGE_RELATIVE) if before else (None, None)
        return now - before, CHANGE_COUNT


def _summary(sheet: WriteOnlyWorksheet, week: WeekFigures, look: _Look) -> int:
    now, before = week.current, week.previous
    lines = [
        _Line("period start (UTC)", now.start, before.start, DAY),
        _Line("period end (UTC)", now.end, before.end, DAY),
        _Line("pool size (end of period)", now.pool, before.pool, INTEGER),
    ]
    for status in (HEALTHY, UNHEALTHY, DEAD, UNKNOWN):
        lines.append(
            _Line(f"{status} proxies", now.statuses[status], before.statuses[status], INTEGER)
        )
        lines.append(_Line(f"{status} share", now.share(status), before.share(status), PERCENT))
    lines += [
        _Line("new proxies", now.new, before.new, INTEGER),
        _Line("removed proxies", now.removed, before.removed, INTEGER),
        _Line("checks run", now.checks, before.checks, INTEGER),
        _Line("success rate", now.success_rate, before.success_rate, PERCENT),
        _Line("latency p50", now.latency_p50_ms, before.latency_p50_ms, MS),
        _Line("latency p95", now.latency_p95_ms, before.latency_p95_ms, MS),
    ]
    columns = [
        [line.name for line in lines],
        [shown(line.current, line.number_format) for line in lines],
        [shown(line.previous, line.number_format) for line in lines],
        [shown(*line.change) for line in lines],
    ]
    _start(sheet, SUMMARY_HEADER, columns, look, len(lines), (False, True, True, True))
    for line in lines:
        change, change_format = line.change
        sheet.append(
            [
                safe_text(line.name),
                _cell(sheet, line.current, line.number_format),
                _cell(sheet, line.previous, line.number_format),
                _cell(sheet, change, change_format),
            ]
        )
    return len(lines)


def _daily(sheet: WriteOnlyWorksheet, week: WeekFigures, look: _Look) -> int:
    formats = (DAY, INTEGER, INTEGER, PERCENT, MS, MS, INTEGER, INTEGER, PERCENT)
    rows = [
        (
            day.day,
            day.checks,
            day.successes,
            day.success_rate,
            day.latency_p50_ms,
            day.latency_p95_ms,
            day.healthy,
            day.pool,
            day.healthy_share,
        )
        for day in week.days
    ]
    columns = [[shown(row[i], f) for row in rows] for i, f in enumerate(formats)]
    _start(sheet, DAILY_HEADER, columns, look, len(rows), [True] * len(formats))
    for row in rows:
        sheet.append([_cell(sheet, value, f) for value, f in zip(row, formats, strict=True)])
    # Below the table, where a reader looks next (to its right it starts off screen).
    sheet.add_chart(_daily_chart(sheet, week, look), f"A{len(rows) + 3}")
    return len(rows)


def _daily_chart(sheet: WriteOnlyWorksheet, week: WeekFigures, look: _Look) -> LineChart:
    """Success rate and healthy share on the left axis (scaled to the week's values, as in
    the PDF), p95 latency on the right axis; straight lines between the days."""
    last = len(week.days) + 1
    column = {name: DAILY_HEADER.index(name) + 1 for name in DAILY_HEADER}
    shares = LineChart()
    shares.title = "Success rate, healthy share and p95 latency per day"
    for name in ("success rate", "healthy share"):
        shares.add_data(
            Reference(sheet, min_col=column[name], min_row=1, max_row=last), titles_from_data=True
        )
    shares.set_categories(Reference(sheet, min_col=1, min_row=2, max_row=last))
    axis = share_axis([d.success_rate for d in week.days] + [d.healthy_share for d in week.days])
    shares.y_axis.scaling.min = axis.low
    shares.y_axis.scaling.max = axis.high
    shares.y_axis.majorUnit = axis.step
    shares.y_axis.number_format = "0%"
    shares.y_axis.title = (
        "share" if axis.from_zero else f"share (axis from {axis.low * 100:g}%, not 0)"
    )
    latency = LineChart()
    latency.add_data(
        Reference(sheet, min_col=column["latency p95"], min_row=1, max_row=last),
        titles_from_data=True,
    )
    latency.y_axis.axId = 200
    latency.y_axis.title = "p95 latency (ms)"
    latency.y_axis.number_format = "#,##0"
    latency.y_axis.crosses = "max"
    latency.y_axis.majorGridlines = None
    for series, colour, dashed in (
        (shares.series[0], SUCCESS_COLOUR, False),
        (shares.series[1], look.accent, False),
        (latency.series[0], LATENCY_COLOUR, True),
    ):
        series.smooth = False  # openpyxl's default curve invents values between the days
        series.graphicalProperties.line.solidFill = colour
        series.graphicalProperties.line.width = 28_000
        if dashed:
            series.graphicalProperties.line.dashStyle = "dash"
    shares += latency
    shares.x_axis.number_format = "mm-dd"
    # openpyxl 3.1 marks axes deleted unless told otherwise: Excel would hide them.
    for chart_axis in (shares.x_axis, shares.y_axis, latency.y_axis):
        chart_axis.delete = False
    shares.legend.position = "b"
    shares.height, shares.width = 9, 20
    return shares


def _proxies(sheet: WriteOnlyWorksheet, week: WeekFigures, look: _Look) -> int:
    proxies = week.proxies
    most_checks = max((p.checks for p in proxies), default=0)
    longest_ms = max((p.latency_avg_ms or 0.0 for p in proxies), default=0.0)
    columns: list[Iterable[str]] = [
        [p.url for p in proxies],
        [p.protocol for p in proxies],
        [p.country for p in proxies],
        [shown(p.source, None) for p in proxies],
        [p.health_status for p in proxies],
        [shown(most_checks, INTEGER)],
        [shown(most_checks, INTEGER)],
        ["100.0%"],
        [shown(longest_ms, MS)],
    ]
    _start(sheet, PROXY_HEADER, columns, look, len(proxies), [False] * 5 + [True] * 4)
    for proxy in proxies:
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
    return len(proxies)


def _errors(sheet: WriteOnlyWorksheet, week: WeekFigures, look: _Look) -> int:
    header = ("day (UTC)", *(f"errors {kind}" for kind in ERROR_KINDS), "failures")
    rows = [
        (day.day, *(day.errors[kind] for kind in ERROR_KINDS), day.checks - day.successes)
        for day in week.days
    ]
    formats = (DAY, *(INTEGER for _ in header[1:]))
    columns = [[shown(row[i], f) for row in rows] for i, f in enumerate(formats)]
    _start(sheet, header, columns, look, len(rows), [True] * len(formats))
    for row in rows:
        sheet.append([_cell(sheet, value, f) for value, f in zip(row, formats, strict=True)])
    return len(rows)


def _provenance(sheet: WriteOnlyWorksheet, exports: list[MetricsExport], look: _Look) -> int:
    """The day's proxy_metrics manifest sha256 (empty when none) and what the report did."""
    columns = [
        [shown(e.day, DAY) for e in exports],
        [e.manifest_sha256 or "" for e in exports],
        [e.status for e in exports],
    ]
    # A digest is never cut: its column fits all 64 hex digits.
    _start(sheet, PROVENANCE_HEADER, columns, look, len(exports), (True, False, False), cap=80)
    for export in exports:
        sheet.append(
            [_cell(sheet, export.day, DAY), export.manifest_sha256, safe_text(export.status)]
        )
    return len(exports)
