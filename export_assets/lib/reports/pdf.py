"""The weekly health report as a PDF: what callers need, without importing reportlab.

reportlab takes a tenth of a second to import, so it is loaded only when a report is
rendered (:func:`render_health_report`, the layout in ``pdf_pages``): a run that exports
only ``proxy_list`` never imports it. The number formats live here so that the tests format
the numbers they look for the same way.

Reproducible but for one stamp: every page's footer says ``Generated YYYY-MM-DD HH:MM UTC``
(the run's time, to the minute; ``generated_at`` sets it). Nothing else depends on when or
where it runs: reportlab's invariant mode dates the PDF's info 2000-01-01 and derives its
/ID from the content, so the same week and the same stamp give the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from export_assets.lib.reports.provenance import MetricsExport
from export_assets.lib.reports.window import WeekFigures

DASH = "–"


@dataclass(frozen=True)
class Branding:
    """How the report looks: its title, a logo image (PNG or JPEG) and an accent colour."""

    title: str = "ProxyWhirl health report"
    logo_path: Path | None = None
    accent: str = "#2b6cb0"


def count(value: int) -> str:
    """An integer with thousands separators: ``12,345``."""
    return f"{value:,}"


def percent(value: float | None) -> str:
    """A share as a percentage with one decimal: ``87.3%``; a dash when undefined."""
    return DASH if value is None else f"{value * 100:.1f}%"


def milliseconds(value: float | None) -> str:
    """A latency in ms with one decimal: ``1,234.5 ms``; a dash when undefined."""
    return DASH if value is None else f"{value:,.1f} ms"


def change_count(now: int, before: int) -> str:
    """A change of a count, signed: ``+27``."""
    return f"{now - before:+,}"


def change_points(now: float | None, before: float | None) -> str:
    """A change of a share in percentage points: ``-2.8 pts``."""
    if now is None or before is None:
        return DASH
    return f"{(now - before) * 100:+.1f} pts"


def change_relative(now: float | None, before: float | None) -> str:
    """A relative change (of a latency): ``+1.7%``."""
    if now is None or before is None or before == 0:
        return DASH
    return f"{(now - before) / before * 100:+.1f}%"


def render_health_report(
    week: WeekFigures,
    exports: list[MetricsExport],
    branding: Branding,
    *,
    generated_at: datetime | None = None,
) -> tuple[bytes, int]:
    """The report's PDF bytes and its number of pages."""
    from export_assets.lib.reports import pdf_pages  # reportlab: only when a report is rendered

    return pdf_pages.render(week, exports, branding, generated_at=generated_at)
