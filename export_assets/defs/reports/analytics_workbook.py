"""``analytics_workbook``: the weekly Excel workbook of the 7 UTC days ending on the partition."""
# No "from __future__ import annotations": Dagster reads the config and resource annotations.

from pydantic import Field

from export_assets.defs.exports.daily import REPORT_GROUP, DayContext, daily_export
from export_assets.defs.partitions import partition_day
from export_assets.defs.reports.health_report import (
    WEEK_OF_METRICS,
    ReportBrandingConfig,
    report_source,
)
from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.defs.resources.store import ExportStore
from export_assets.lib.exports.export import RenderedExport, RenderedOptions
from export_assets.lib.reports.provenance import metrics_exports
from export_assets.lib.reports.window import week_figures
from export_assets.lib.reports.workbook import WORKBOOK_TITLE, render_workbook


class AnalyticsWorkbookConfig(ReportBrandingConfig):
    """Run config of ``analytics_workbook``: title and accent colour (the logo is unused)."""

    title: str = Field(
        default=WORKBOOK_TITLE,
        min_length=1,
        max_length=80,
        description="The workbook's title (its document title property).",
    )


@daily_export(
    group_name=REPORT_GROUP,
    kinds={"xlsx"},
    deps=[WEEK_OF_METRICS],
    description=(
        "Weekly analytics workbook (xlsx) of the 7 UTC days ending on the partition's day: "
        "Summary (the report's page-1 figures), Daily (with a chart of success rate and p95 "
        "latency), Proxies (the pool at the end of the day with its week's checks) and Errors "
        "(failures per day and type). Dates are Excel dates in UTC; text is formula-safe."
    ),
)
def analytics_workbook(
    context: DayContext,
    config: AnalyticsWorkbookConfig,
    proxywhirl: ProxyWhirlSource,
    export_store: ExportStore,
) -> RenderedExport:
    day = partition_day(context.partition_key)
    accent = config.accent()
    with proxywhirl.open_snapshot() as snapshot:
        week = week_figures(snapshot, day, min_checks=1)
        exports = metrics_exports(export_store.open(), snapshot, [d.day for d in week.days])
    content, rows = render_workbook(week, exports, title=config.title, accent=accent)
    context.log.info(f"analytics workbook {week.start} .. {week.end}: {rows:,} data rows")
    return RenderedExport(
        content=content,
        records=rows,
        options=RenderedOptions(format="xlsx"),
        source=report_source(proxywhirl, week, exports),
    )
