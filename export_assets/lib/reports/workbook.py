"""The weekly analytics workbook: its sheets and columns, without importing openpyxl.

openpyxl is loaded only when a workbook is rendered (:func:`render_workbook`, the sheets in
``workbook_sheets``): a run that exports only ``proxy_list`` as csv never imports it.

Sheets: Summary (a key/value sheet: this week, the previous week and the change, shares in
percentage points as in the PDF), Daily (with a chart), Proxies, Errors and Provenance (the
``proxy_metrics`` manifests the figures agree with). Every sheet has one header row and then
data rows only: the export's reader counts the data rows of every sheet. The same week gives
the same bytes: the file is dated the period's end (``spreadsheet.save_reproducible_xlsx``).
"""

from __future__ import annotations

import re

from export_assets.lib.exports.spreadsheet import (
    FORMULA_ESCAPE,
    FORMULA_START,
    xlsx_keeps_carriage_returns,
)
from export_assets.lib.reports.provenance import MetricsExport
from export_assets.lib.reports.window import WeekFigures

WORKBOOK_TITLE = "ProxyWhirl analytics workbook"
"""The workbook's own title (its document title property), unless the run config sets one."""

SHEETS = ("Summary", "Daily", "Proxies", "Errors", "Provenance")
TABLE_SHEETS = ("Daily", "Proxies", "Errors", "Provenance")
"""The sheets that are tables (an auto-filter over their rows); Summary is key/value."""
SUMMARY_HEADER = ("metric", "this week", "previous week", "change")
PROXY_HEADER = (
    "url",
    "protocol",
    "country",
    "source",
    "health_status (end of day)",
    "checks (7 days)",
    "successes (7 days)",
    "success rate (7 days)",
    "avg latency (7 days)",
)
DAILY_HEADER = (
    "day (UTC)",
    "checks",
    "successes",
    "success rate",
    "latency p50",
    "latency p95",
    "healthy (end of day)",
    "pool (end of day)",
    "healthy share",
)
PROVENANCE_HEADER = ("day (UTC)", "proxy_metrics manifest sha256", "status")

_FORMULA = re.compile(FORMULA_START)
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def safe_text(value: str) -> str:
    """Text as an xlsx cell holds it safely: characters XML cannot hold removed, then a
    leading ``'`` when a spreadsheet would run it as a formula (line ends as in
    ``spreadsheet.excel_text``)."""
    value = _ILLEGAL.sub("", value)
    if not xlsx_keeps_carriage_returns():
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    return FORMULA_ESCAPE + value if _FORMULA.match(value) else value


def render_workbook(
    week: WeekFigures,
    exports: list[MetricsExport],
    *,
    title: str = WORKBOOK_TITLE,
    accent: str,
) -> tuple[bytes, int]:
    """The workbook's bytes and its number of data rows (every sheet, headers excluded)."""
    from export_assets.lib.reports.workbook_sheets import render  # openpyxl: only when rendered

    return render(week, exports, title=title, accent=accent)
