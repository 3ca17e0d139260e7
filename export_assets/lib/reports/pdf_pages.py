"""The health report's pages: reportlab platypus flowables and reportlab.graphics charts.

Imported only when a report is rendered (see ``pdf``). Every piece of text that comes from
proxy data goes through :func:`_text` (XML-escaped for reportlab's Paragraph markup, control
characters removed, credentials masked, truncated), so a hostile string renders as the
characters it holds and never as markup. Tables and charts are bounded (top N), so a pool of
100,000 proxies renders as fast as one of 80.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.charts.barcharts import HorizontalBarChart, VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.linecharts import HorizontalLineChart
from reportlab.graphics.shapes import Drawing, String
from reportlab.graphics.widgets.markers import makeMarker
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas
from reportlab.platypus import (
    BaseDocTemplate,
    CondPageBreak,
    Flowable,
    Frame,
    Image,
    KeepTogether,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

from export_assets.lib.reports.axes import share_axis
from export_assets.lib.reports.pdf import (
    DASH,
    Branding,
    change_count,
    change_points,
    change_relative,
    count,
    milliseconds,
    percent,
)
from export_assets.lib.reports.provenance import EXPORTED, MetricsExport, combined_digest
from export_assets.lib.reports.window import (
    ERROR_KINDS,
    PeriodFigures,
    ProxyFigures,
    WeekFigures,
    clean_text,
    source_ranking_rule,
)
from export_assets.lib.source.status import DEAD, HEALTHY, UNHEALTHY, UNKNOWN

PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN = 16 * mm
CONTENT_WIDTH = PAGE_WIDTH - 2 * MARGIN
INK = colors.HexColor("#1f2933")
MUTED = colors.HexColor("#616e7c")
RULE = colors.HexColor("#d9dee3")
ZEBRA = colors.HexColor("#f5f7fa")
GOOD = colors.HexColor("#2f855a")
BAD = colors.HexColor("#c53030")
# One colour per failure kind, stable across reports.
SERIES = [
    colors.HexColor(c)
    for c in ("#2b6cb0", "#dd6b20", "#805ad5", "#d53f8c", "#319795", "#b7791f", "#718096")
]
# --- fonts: DejaVu covers Latin, Greek, Cyrillic and Arabic letters; Helvetica otherwise ---

DIGEST_FONT, DIGEST_SIZE = "Courier", 6.8
CELL_PADDING = 6  # reportlab's default left and right padding of a table cell

_DEJAVU = Path("/usr/share/fonts/truetype/dejavu")


def _fonts() -> tuple[str, str]:
    regular, bold = _DEJAVU / "DejaVuSans.ttf", _DEJAVU / "DejaVuSans-Bold.ttf"
    if "ReportSans" in pdfmetrics.getRegisteredFontNames():
        return "ReportSans", "ReportSans-Bold"
    if regular.is_file() and bold.is_file():
        pdfmetrics.registerFont(TTFont("ReportSans", str(regular)))
        pdfmetrics.registerFont(TTFont("ReportSans-Bold", str(bold)))
        return "ReportSans", "ReportSans-Bold"
    return "Helvetica", "Helvetica-Bold"


def _text(value: str, length: int = 120) -> str:
    """Proxy data as Paragraph markup that shows exactly its characters."""
    return escape(clean_text(value, length))


# --- the document ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Look:
    regular: str
    bold: str
    accent: colors.Color
    styles: dict[str, ParagraphStyle]


def _look(branding: Branding) -> _Look:
    regular, bold = _fonts()
    accent = colors.HexColor(branding.accent)

    def style(name: str, **options: Any) -> ParagraphStyle:
        base: dict[str, Any] = {"fontName": regular, "fontSize": 9, "leading": 12, "textColor": INK}
        base.update(options)
        return ParagraphStyle(name, **base)

    return _Look(
        regular,
        bold,
        accent,
        {
            "h1": style("h1", fontName=bold, fontSize=18, leading=22, spaceAfter=2),
            "h2": style(
                "h2",
                fontName=bold,
                fontSize=12.5,
                leading=16,
                spaceBefore=10,
                spaceAfter=5,
                textColor=accent,
            ),
            "lead": style("lead", fontSize=10, leading=14, textColor=MUTED, spaceAfter=8),
            "body": style("body"),
            "note": style("note", fontSize=8, leading=10.5, textColor=MUTED),
            "cell": style("cell", fontSize=8, leading=10, wordWrap="CJK"),
            "cell_right": style("cell_right", fontSize=8, leading=10, alignment=TA_RIGHT),
            "kpi_value": style("kpi_value", fontName=bold, fontSize=17, leading=21),
            "kpi_label": style("kpi_label", fontSize=7.5, leading=9.5, textColor=MUTED),
            "notice": style("notice", fontName=bold, fontSize=11, leading=15, textColor=accent),
        },
    )


def render(
    week: WeekFigures,
    exports: list[MetricsExport],
    branding: Branding,
    *,
    generated_at: datetime | None = None,
) -> tuple[bytes, int]:
    """The report's PDF bytes and its number of pages."""
    look = _look(branding)
    generated = (generated_at or datetime.now(UTC)).astimezone(UTC)
    digest = combined_digest(exports)
    period = f"{_day(week.start)} {DASH} {_day(week.end)} (UTC)"
    buffer = io.BytesIO()
    document = BaseDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN + 12 * mm,
        bottomMargin=MARGIN + 8 * mm,
        title=f"{branding.title}: {period}",
        author="export_assets",
        subject="Weekly proxy pool health",
        creator="export_assets health_report",
        invariant=True,  # no time or zone of the run in the file but the footer's stamp
    )
    frame = Frame(
        document.leftMargin,
        document.bottomMargin,
        document.width,
        document.height,
        id="body",
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
    )

    def decorate(page: canvas.Canvas, _: BaseDocTemplate) -> None:
        _header(page, look, branding, period)
        _footer(page, look, generated, digest)

    document.addPageTemplates([PageTemplate(id="page", frames=[frame], onPage=decorate)])
    story = _story(week, exports, look, period, digest)
    document.build(story, canvasmaker=_numbered_canvas(look))
    return buffer.getvalue(), document.page


def _day(day: date) -> str:
    return f"{day.day} {day:%b %Y}"


def _header(page: canvas.Canvas, look: _Look, branding: Branding, period: str) -> None:
    page.saveState()
    top = PAGE_HEIGHT - MARGIN
    page.setFillColor(look.accent)
    page.rect(0, PAGE_HEIGHT - 5 * mm, PAGE_WIDTH, 5 * mm, stroke=0, fill=1)
    x = MARGIN
    if branding.logo_path is not None:
        height = 9 * mm
        image = Image(str(branding.logo_path))
        width = height * image.imageWidth / max(image.imageHeight, 1)
        page.drawImage(
            str(branding.logo_path), x, top - height + 2 * mm, width, height, mask="auto"
        )
        x += width + 3 * mm
    page.setFillColor(INK)
    page.setFont(look.bold, 11)
    page.drawString(x, top - 3 * mm, clean_text(branding.title, 80))
    page.setFont(look.regular, 8.5)
    page.setFillColor(MUTED)
    page.drawRightString(PAGE_WIDTH - MARGIN, top - 3 * mm, period)
    page.setStrokeColor(RULE)
    page.setLineWidth(0.6)
    page.line(MARGIN, top - 6 * mm, PAGE_WIDTH - MARGIN, top - 6 * mm)
    page.restoreState()


def _footer(page: canvas.Canvas, look: _Look, generated: datetime, digest: str) -> None:
    page.saveState()
    page.setStrokeColor(RULE)
    page.setLineWidth(0.6)
    page.line(MARGIN, MARGIN + 4 * mm, PAGE_WIDTH - MARGIN, MARGIN + 4 * mm)
    page.setFont(look.regular, 7)
    page.setFillColor(MUTED)
    page.drawString(MARGIN, MARGIN, f"Generated {generated:%Y-%m-%d %H:%M} UTC")
    page.drawCentredString(PAGE_WIDTH / 2, MARGIN, f"proxy_metrics manifests sha256 {digest[:16]}")
    page.restoreState()


def _numbered_canvas(look: _Look) -> Callable[..., canvas.Canvas]:
    class NumberedCanvas(canvas.Canvas):  # type: ignore[misc]  # reportlab has no types
        """Holds pages until the end so each can say ``Page n of N``."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            for number, state in enumerate(self._pages, start=1):
                self.__dict__.update(state)
                self.setFont(look.regular, 7)
                self.setFillColor(MUTED)
                self.drawRightString(
                    PAGE_WIDTH - MARGIN, MARGIN, f"Page {number} of {len(self._pages)}"
                )
                super().showPage()
            super().save()

    return NumberedCanvas


# --- the story ---------------------------------------------------------------------------


def _story(
    week: WeekFigures, exports: list[MetricsExport], look: _Look, period: str, digest: str
) -> list[Flowable]:
    s = look.styles
    now, before = week.current, week.previous
    story: list[Flowable] = [
        Paragraph("Weekly proxy pool health", s["h1"]),
        Paragraph(
            f"{period}, compared with the previous 7 days "
            f"({_day(before.start)} {DASH} {_day(before.end)}). Pool figures are the pool as of "
            "the end of the period; check figures count the checks made during it.",
            s["lead"],
        ),
    ]
    if week.empty:
        story.append(
            Paragraph(
                f"No proxies and no checks were recorded between {_day(week.start)} and "
                f"{_day(week.end)}: there is nothing to chart or rank for this week.",
                s["notice"],
            )
        )
        story.append(Spacer(1, 4 * mm))
    story.append(_kpis(now, before, look))
    story.append(Spacer(1, 5 * mm))
    story.append(_summary_table(now, before, look))
    story.append(Spacer(1, 3 * mm))
    missing = [e for e in exports if e.status != EXPORTED]
    story.append(
        Paragraph(
            f"Built from {len(exports) - len(missing)} of {len(exports)} daily proxy_metrics "
            "exports (manifests listed on the last page)"
            + (f"; {len(missing)} day(s) computed from the source instead." if missing else "."),
            s["note"],
        )
    )
    if not week.empty:
        story.append(Paragraph("Availability", s["h2"]))
        story.append(_availability_chart(week, look))
        story.append(_daily_table(week, look))
        story.append(PageBreak())
        story.append(Paragraph("Latency distribution", s["h2"]))
        story.append(
            Paragraph(
                "Successful checks by response time, logarithmic bins "
                f"(median {milliseconds(now.latency_p50_ms)}, "
                f"p95 {milliseconds(now.latency_p95_ms)}).",
                s["note"],
            )
        )
        story.append(_latency_chart(week, look))
        story.append(Paragraph("Failures by error type", s["h2"]))
        story.append(_failures_chart(week, look))
        story.append(Paragraph("Pool composition", s["h2"]))
        story.append(_composition(week, look))
        story.append(PageBreak())
        story.extend(_rankings(week, look))
    story.append(CondPageBreak(70 * mm))
    story.extend(_provenance(week, exports, look, digest))
    return story


def _kpis(now: PeriodFigures, before: PeriodFigures, look: _Look) -> Table:
    s = look.styles
    cards = [
        ("Pool size", count(now.pool), change_count(now.pool, before.pool), None),
        (
            "Healthy share",
            percent(now.share(HEALTHY)),
            change_points(now.share(HEALTHY), before.share(HEALTHY)),
            True,
        ),
        (
            "Success rate",
            percent(now.success_rate),
            change_points(now.success_rate, before.success_rate),
            True,
        ),
        (
            "p95 latency",
            milliseconds(now.latency_p95_ms),
            change_relative(now.latency_p95_ms, before.latency_p95_ms),
            False,
        ),
    ]
    cells = []
    for label, value, change, higher_is_better in cards:
        tint = MUTED
        if higher_is_better is not None and change not in (DASH,) and not change.startswith("+0.0"):
            up = change.startswith("+")
            tint = GOOD if up == higher_is_better else BAD
        cells.append(
            [
                Paragraph(escape(label.upper()), s["kpi_label"]),
                Paragraph(escape(value), s["kpi_value"]),
                Paragraph(
                    f'<font color="{tint.hexval().replace("0x", "#")}">{escape(change)}</font>'
                    " vs previous 7 days",
                    s["kpi_label"],
                ),
            ]
        )
    table = Table([cells], colWidths=[CONTENT_WIDTH / 4] * 4)
    table.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, -1), ZEBRA),
                ("LINEABOVE", (0, 0), (-1, 0), 2, look.accent),
                ("LINEAFTER", (0, 0), (-2, -1), 4, colors.white),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 6),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 7),
                ("LEFTPADDING", (0, 0), (-1, -1), 8),
            ]
        )
    )
    return table


def _summary_table(now: PeriodFigures, before: PeriodFigures, look: _Look) -> Table:
    rows: list[list[str]] = [["", "This week", "Previous week", "Change"]]
    rows.append(
        [
            "Pool size (end of period)",
            count(now.pool),
            count(before.pool),
            change_count(now.pool, before.pool),
        ]
    )
    for status in (HEALTHY, UNHEALTHY, DEAD, UNKNOWN):
        rows.append(
            [
                f"{status.capitalize()} proxies (share)",
                f"{count(now.statuses[status])} ({percent(now.share(status))})",
                f"{count(before.statuses[status])} ({percent(before.share(status))})",
                f"{change_count(now.statuses[status], before.statuses[status])} "
                f"({change_points(now.share(status), before.share(status))})",
            ]
        )
    rows += [
        ["New proxies", count(now.new), count(before.new), change_count(now.new, before.new)],
        [
            "Removed proxies",
            count(now.removed),
            count(before.removed),
            change_count(now.removed, before.removed),
        ],
        [
            "Checks run",
            count(now.checks),
            count(before.checks),
            change_count(now.checks, before.checks),
        ],
        [
            "Success rate",
            percent(now.success_rate),
            percent(before.success_rate),
            change_points(now.success_rate, before.success_rate),
        ],
        [
            "Median latency",
            milliseconds(now.latency_p50_ms),
            milliseconds(before.latency_p50_ms),
            change_relative(now.latency_p50_ms, before.latency_p50_ms),
        ],
        [
            "p95 latency",
            milliseconds(now.latency_p95_ms),
            milliseconds(before.latency_p95_ms),
            change_relative(now.latency_p95_ms, before.latency_p95_ms),
        ],
    ]
    table = Table(rows, colWidths=[CONTENT_WIDTH * w for w in (0.34, 0.22, 0.22, 0.22)])
    table.setStyle(_grid(look, numeric_from=1))
    return table


def _grid(look: _Look, *, numeric_from: int, rows: int = 0) -> TableStyle:
    """The house table style: accent header, zebra rows, numbers right-aligned."""
    return TableStyle(
        [
            ("FONT", (0, 0), (-1, -1), look.regular, 8.5),
            ("FONT", (0, 0), (-1, 0), look.bold, 8),
            ("TEXTCOLOR", (0, 0), (-1, 0), colors.white),
            ("BACKGROUND", (0, 0), (-1, 0), look.accent),
            ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, ZEBRA]),
            ("ALIGN", (numeric_from, 0), (-1, -1), "RIGHT"),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ("LINEBELOW", (0, -1), (-1, -1), 0.6, RULE),
            ("TOPPADDING", (0, 0), (-1, -1), 3.5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 3.5),
        ]
    )


def _daily_table(week: WeekFigures, look: _Look) -> Table:
    rows = [
        [
            "Day (UTC)",
            "Checks",
            "Success rate",
            "Median latency",
            "p95 latency",
            "Healthy (end of day)",
        ]
    ]
    rows += [
        [
            f"{d.day:%a %d %b}",
            count(d.checks),
            percent(d.success_rate),
            milliseconds(d.latency_p50_ms),
            milliseconds(d.latency_p95_ms),
            f"{count(d.healthy)} of {count(d.pool)} ({percent(d.healthy_share)})",
        ]
        for d in week.days
    ]
    table = Table(rows, colWidths=[CONTENT_WIDTH * w for w in (0.16, 0.12, 0.15, 0.17, 0.16, 0.24)])
    style = _grid(look, numeric_from=1)
    style.add("FONT", (0, 1), (-1, -1), look.regular, 7.5)
    style.add("TOPPADDING", (0, 0), (-1, -1), 2)
    style.add("BOTTOMPADDING", (0, 0), (-1, -1), 2)
    table.setStyle(style)
    return table


# --- charts ------------------------------------------------------------------------------


def _legend(look: _Look, items: Sequence[tuple[colors.Color, str]], x: float, y: float) -> Legend:
    legend = Legend()
    legend.x, legend.y = x, y
    legend.alignment = "right"
    legend.fontName = look.regular
    legend.fontSize = 7.5
    legend.columnMaximum = 1
    legend.dx = legend.dy = 7
    legend.deltax = 95
    legend.colorNamePairs = list(items)
    return legend


def _availability_chart(week: WeekFigures, look: _Look) -> Drawing:
    """Healthy share and success rate per day, on an axis scaled to the week's values."""
    height = 60 * mm
    drawing = Drawing(CONTENT_WIDTH, height)
    chart = HorizontalLineChart()
    chart.x, chart.y = 34, 20
    chart.width, chart.height = CONTENT_WIDTH - 50, height - 46
    healthy = [d.healthy_share for d in week.days]
    success = [d.success_rate for d in week.days]
    axis = share_axis([*healthy, *success])
    # A day without checks (or without a pool) is a gap in its line, never a fall to 0%.
    chart.data = [[None if v is None else v * 100 for v in series] for series in (healthy, success)]
    chart.categoryAxis.categoryNames = [f"{d.day:%a %d}" for d in week.days]
    _axes(
        chart,
        look,
        value_max=round(axis.high * 100, 6),
        value_step=round(axis.step * 100, 6),
        suffix="%",
    )
    chart.valueAxis.valueMin = round(axis.low * 100, 6)
    chart.valueAxis.labelTextFormat = lambda v: f"{v:g}%"
    for index, colour in enumerate((look.accent, SERIES[1])):
        chart.lines[index].strokeColor = colour
        chart.lines[index].strokeWidth = 1.8
        chart.lines[index].symbol = makeMarker("FilledCircle", size=4, fillColor=colour)
    drawing.add(chart)
    drawing.add(
        _legend(
            look,
            [(look.accent, "Healthy share (end of day)"), (SERIES[1], "Success rate")],
            CONTENT_WIDTH - 190,
            height - 6,
        )
    )
    drawing.add(
        String(
            0,
            height - 9,
            axis.note.capitalize(),
            fontName=look.regular,
            fontSize=7,
            fillColor=MUTED,
        )
    )
    return drawing


def _axes(chart: Any, look: _Look, *, value_max: float, value_step: float, suffix: str) -> None:
    chart.valueAxis.valueMin = 0
    chart.valueAxis.valueMax = value_max
    chart.valueAxis.valueStep = value_step
    chart.valueAxis.labelTextFormat = "%d" + suffix.replace("%", "%%")
    chart.valueAxis.labels.fontName = look.regular
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.visibleGrid = True
    chart.valueAxis.gridStrokeColor = RULE
    chart.valueAxis.gridStrokeWidth = 0.4
    chart.valueAxis.strokeColor = RULE
    chart.categoryAxis.labels.fontName = look.regular
    chart.categoryAxis.labels.fontSize = 7
    chart.categoryAxis.strokeColor = MUTED


def _nice_max(value: float) -> tuple[float, float]:
    """An axis maximum above ``value`` and a step, both round numbers."""
    if value <= 0:
        return 1.0, 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for factor in (1, 2, 2.5, 5, 10):
        top = factor * magnitude
        if top >= value:
            steps = 5 if factor in (1, 5, 10) else 4
            return top, top / steps
    return 10.0 * magnitude, 2.0 * magnitude


def _latency_chart(week: WeekFigures, look: _Look) -> Drawing:
    bins = list(week.latency_histogram)
    # Trim empty bins at both ends, keeping the shape readable.
    counts = [c for _, _, c in bins]
    nonzero = [i for i, c in enumerate(counts) if c]
    if nonzero:
        bins = bins[max(nonzero[0] - 1, 0) : nonzero[-1] + 2]
    drawing = Drawing(CONTENT_WIDTH, 55 * mm)
    chart = VerticalBarChart()
    chart.x, chart.y = 42, 26
    chart.width, chart.height = CONTENT_WIDTH - 55, 55 * mm - 36
    chart.data = [[c for _, _, c in bins]]
    chart.categoryAxis.categoryNames = [_bin_label(low, high) for low, high, _ in bins]
    top, step = _nice_max(max([c for _, _, c in bins] or [0]))
    _axes(chart, look, value_max=top, value_step=step, suffix="")
    chart.valueAxis.labelTextFormat = lambda v: f"{v:,.0f}"
    chart.bars[0].fillColor = look.accent
    chart.bars[0].strokeColor = None
    chart.barSpacing = 1
    chart.groupSpacing = 4
    drawing.add(chart)
    drawing.add(
        String(
            chart.x + chart.width / 2,
            2,
            "response time (ms)",
            fontName=look.regular,
            fontSize=7,
            fillColor=MUTED,
            textAnchor="middle",
        )
    )
    return drawing


def _bin_label(low: float, high: float | None) -> str:
    def short(value: float) -> str:
        return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"

    return f"≥{short(low)}" if high is None else f"{short(low)}–{short(high)}"


def _failures_chart(week: WeekFigures, look: _Look) -> Drawing:
    kinds = [k for k in ERROR_KINDS if any(d.errors[k] for d in week.days)] or [ERROR_KINDS[0]]
    drawing = Drawing(CONTENT_WIDTH, 58 * mm)
    chart = VerticalBarChart()
    chart.x, chart.y = 42, 26
    chart.width, chart.height = CONTENT_WIDTH - 170, 58 * mm - 36
    chart.data = [[d.errors[k] for d in week.days] for k in kinds]
    chart.categoryAxis.categoryNames = [f"{d.day:%a %d}" for d in week.days]
    chart.categoryAxis.style = "stacked"
    totals = [sum(d.errors[k] for k in kinds) for d in week.days]
    top, step = _nice_max(max(totals or [0]))
    _axes(chart, look, value_max=top, value_step=step, suffix="")
    chart.valueAxis.labelTextFormat = lambda v: f"{v:,.0f}"
    for index, kind in enumerate(kinds):
        chart.bars[index].fillColor = SERIES[ERROR_KINDS.index(kind) % len(SERIES)]
        chart.bars[index].strokeColor = None
    chart.groupSpacing = 10
    drawing.add(chart)
    legend = _legend(
        look,
        [
            (SERIES[ERROR_KINDS.index(k) % len(SERIES)], k.replace("_", " "))
            for k in reversed(kinds)
        ],
        CONTENT_WIDTH - 110,
        58 * mm - 14,
    )
    legend.columnMaximum = 10
    legend.alignment = "left"
    drawing.add(legend)
    return drawing


def _composition(week: WeekFigures, look: _Look) -> Table:
    half = CONTENT_WIDTH / 2 - 4 * mm

    def bars(title: str, items: list[tuple[str, int]]) -> Drawing:
        height = 18 + 12 * max(len(items), 1) + 22
        drawing = Drawing(half, height)
        chart = HorizontalBarChart()
        chart.x, chart.y = 78, 14
        chart.width, chart.height = half - 100, height - 34
        chart.data = [[c for _, c in reversed(items)] or [0]]
        chart.categoryAxis.categoryNames = [clean_text(k, 14) for k, _ in reversed(items)] or [""]
        top, step = _nice_max(max([c for _, c in items] or [0]))
        _axes(chart, look, value_max=top, value_step=step, suffix="")
        chart.valueAxis.labelTextFormat = lambda v: f"{v:,.0f}"
        chart.bars[0].fillColor = look.accent
        chart.bars[0].strokeColor = None
        chart.barLabelFormat = lambda v: f"{v:,.0f}"
        chart.barLabels.fontName = look.regular
        chart.barLabels.fontSize = 6.5
        chart.barLabels.boxAnchor = "w"
        chart.barLabels.dx = 3
        drawing.add(chart)
        drawing.add(String(0, height - 10, title, fontName=look.bold, fontSize=8.5, fillColor=INK))
        return drawing

    table = Table(
        [[bars("By protocol", week.protocols), bars("By country", week.countries)]],
        colWidths=[CONTENT_WIDTH / 2] * 2,
    )
    table.setStyle(
        TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)])
    )
    return table


# --- tables ------------------------------------------------------------------------------


def _rankings(week: WeekFigures, look: _Look) -> list[Flowable]:
    s = look.styles
    flow: list[Flowable] = []
    for title, proxies in (
        ("Most reliable proxies", week.top),
        ("Least reliable proxies", week.bottom),
    ):
        flow.append(
            KeepTogether(
                [
                    Paragraph(title, s["h2"]),
                    Paragraph(
                        f"By success rate over the week, among proxies with at least "
                        f"{week.min_checks} checks.",
                        s["note"],
                    ),
                    Spacer(1, 2),
                    _proxy_table(proxies, look)
                    if proxies
                    else Paragraph(
                        f"No proxy had {week.min_checks} or more checks this week.", s["body"]
                    ),
                ]
            )
        )
    flow.append(Paragraph("Most frequent error messages", s["h2"]))
    if week.errors:
        rows: list[list[Any]] = [["Count", "Type", "Message (masked, truncated)"]]
        rows += [
            [
                count(e.count),
                Paragraph(escape(e.error_type), s["cell"]),
                Paragraph(_text(e.message), s["cell"]),
            ]
            for e in week.errors
        ]
        table = Table(rows, colWidths=[CONTENT_WIDTH * w for w in (0.09, 0.22, 0.69)], repeatRows=1)
        style = _grid(look, numeric_from=0)
        style.add("ALIGN", (1, 0), (-1, -1), "LEFT")
        table.setStyle(style)
        flow.append(table)
    else:
        flow.append(Paragraph("No failed check carried a message this week.", s["body"]))
    flow.append(Paragraph("Sources ranked by health", s["h2"]))
    flow.append(
        Paragraph(
            f"{escape(source_ranking_rule())} The first "
            f"{min(len(week.sources), week.sources_total)} of {week.sources_total} sources.",
            s["note"],
        )
    )
    flow.append(Spacer(1, 2))
    rows = [
        ["Source", "Proxies", "Healthy", "Healthy share", "Lower bound", "Checks", "Success rate"]
    ]
    rows += [
        [
            Paragraph(_text(src.source, 60), s["cell"]),
            count(src.proxies),
            count(src.healthy),
            percent(src.healthy_share),
            percent(src.healthy_share_low),
            count(src.checks),
            percent(src.success_rate),
        ]
        for src in week.sources
    ]
    table = Table(
        rows,
        colWidths=[CONTENT_WIDTH * w for w in (0.28, 0.09, 0.09, 0.14, 0.15, 0.1, 0.15)],
        repeatRows=1,
    )
    table.setStyle(_grid(look, numeric_from=1))
    flow.append(table)
    return flow


def _proxy_table(proxies: list[ProxyFigures], look: _Look) -> Table:
    s = look.styles
    rows: list[list[Any]] = [
        ["#", "Proxy", "Protocol", "Country", "Checks", "Success", "Avg latency"]
    ]
    rows += [
        [
            str(rank),
            Paragraph(_text(p.url, 70), s["cell"]),
            Paragraph(_text(p.protocol, 12), s["cell"]),
            Paragraph(_text(p.country, 12), s["cell"]),
            count(p.checks),
            percent(p.success_rate),
            milliseconds(p.latency_avg_ms),
        ]
        for rank, p in enumerate(proxies, start=1)
    ]
    table = Table(
        rows,
        colWidths=[CONTENT_WIDTH * w for w in (0.05, 0.39, 0.1, 0.1, 0.1, 0.11, 0.15)],
        repeatRows=1,
    )
    style = _grid(look, numeric_from=4)
    style.add("ALIGN", (0, 0), (0, -1), "RIGHT")
    table.setStyle(style)
    return table


def _provenance(
    week: WeekFigures, exports: list[MetricsExport], look: _Look, digest: str
) -> list[Flowable]:
    s = look.styles
    # The sha256 column is as wide as a digest in its font, so 64 hex digits never run into
    # the Status column; Status wraps in what is left.
    digest_width = stringWidth("0" * 64, DIGEST_FONT, DIGEST_SIZE) + 2 * CELL_PADDING + 2
    day_width = CONTENT_WIDTH * 0.13
    rows: list[list[Any]] = [["Day (UTC)", "proxy_metrics manifest sha256", "Status"]]
    rows += [
        [e.day.isoformat(), e.manifest_sha256 or DASH, Paragraph(escape(e.status), s["cell"])]
        for e in exports
    ]
    table = Table(
        rows,
        colWidths=[day_width, digest_width, CONTENT_WIDTH - day_width - digest_width],
        repeatRows=1,
    )
    style = _grid(look, numeric_from=99)
    style.add("FONT", (1, 1), (1, -1), DIGEST_FONT, DIGEST_SIZE)
    table.setStyle(style)
    watermark = (
        "none" if week.validation_results_max_id is None else count(week.validation_results_max_id)
    )
    return [
        Paragraph("Where these numbers come from", s["h2"]),
        Paragraph(
            "Every figure is computed from one read snapshot of ProxyWhirl's database, with the "
            "rules of the proxy_list and proxy_metrics exports (pool rebuilt from the validation "
            "history; percentiles by linear interpolation). Highest validation id read: "
            f"{watermark}. sha256 over the manifests below: {digest}.",
            s["note"],
        ),
        Spacer(1, 3),
        table,
    ]
