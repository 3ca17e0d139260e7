"""``health_report``: the weekly PDF health report of the 7 UTC days ending on the partition."""
# No "from __future__ import annotations": Dagster reads the config and resource annotations.

import re
from pathlib import Path

from dagster import AssetDep, TimeWindowPartitionMapping
from pydantic import Field

from export_assets.defs.exports.config import FailFastConfig
from export_assets.defs.exports.daily import REPORT_GROUP, DayContext, daily_export
from export_assets.defs.partitions import partition_day
from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.defs.resources.store import ExportStore
from export_assets.lib.exports.export import RenderedExport, RenderedOptions
from export_assets.lib.reports.pdf import Branding, render_health_report
from export_assets.lib.reports.provenance import METRICS_ASSET, MetricsExport, metrics_exports
from export_assets.lib.reports.window import WINDOW_DAYS, WeekFigures, week_figures

_HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")

# The report covers D-6 .. D: it depends on those seven proxy_metrics partitions (lineage in
# the UI). A missing one is no error: the report computes that day from the source.
WEEK_OF_METRICS = AssetDep(
    METRICS_ASSET,
    partition_mapping=TimeWindowPartitionMapping(
        start_offset=-(WINDOW_DAYS - 1), end_offset=0, allow_nonexistent_upstream_partitions=True
    ),
)


class ReportBrandingConfig(FailFastConfig):
    """How a report looks: title, logo and accent colour."""

    title: str = Field(
        default="ProxyWhirl health report",
        min_length=1,
        max_length=80,
        description="Title in every page header (and the workbook's title).",
    )
    logo_path: str | None = Field(
        default=None,
        description="A PNG or JPEG shown left of the title in every page header. Unset: none.",
    )
    accent_color: str = Field(
        default="#2b6cb0",
        description="Accent colour as #RRGGBB: header band, table headers, chart series.",
    )

    # Checked when the run starts rather than by a pydantic validator: a config error raised
    # before the asset's body would be retried by the export retry policy.
    def accent(self) -> str:
        """The accent colour, checked to be #RRGGBB."""
        if not _HEX_COLOUR.fullmatch(self.accent_color):
            raise ValueError(
                f"accent_color {self.accent_color!r} is not a colour: write it as #RRGGBB, "
                "e.g. #2b6cb0; nothing was written"
            )
        return self.accent_color

    def branding(self) -> Branding:
        """The branding, with the colour and the logo (a readable image) checked."""
        accent = self.accent()
        logo = None if self.logo_path is None else Path(self.logo_path).expanduser()
        if logo is not None:
            from reportlab.lib.utils import ImageReader  # only when a logo is asked for

            if not logo.is_file():
                raise ValueError(
                    f"logo_path {str(logo)!r} is not a file: point it at a PNG or JPEG image, "
                    "or leave it unset for no logo; nothing was written"
                )
            try:
                ImageReader(str(logo)).getSize()
            except Exception as error:  # PIL raises several types for a file it cannot read
                raise ValueError(
                    f"logo_path {str(logo)!r} is not a readable PNG or JPEG image ({error}): "
                    "point it at an image, or leave it unset; nothing was written"
                ) from None
        return Branding(title=self.title, logo_path=logo, accent=accent)


class HealthReportConfig(ReportBrandingConfig):
    """Run config of ``health_report``: branding and the ranking threshold."""

    min_checks: int = Field(
        default=20,
        ge=1,
        description="Proxies need at least this many checks in the week to be ranked in the "
        "top and bottom 10 by success rate.",
    )


def report_source(
    proxywhirl: ProxyWhirlSource, week: WeekFigures, exports: list[MetricsExport]
) -> dict[str, object]:
    """The facts a report's manifest records: what it was computed from."""
    return {
        "database": proxywhirl.database,
        "period_start": week.start.isoformat(),
        "period_end": week.end.isoformat(),
        "validation_results_max_id": week.validation_results_max_id,
        "proxy_metrics_manifests": {e.day.isoformat(): e.manifest_sha256 for e in exports},
        "computed_from_source": [e.day.isoformat() for e in exports if e.manifest_sha256 is None],
    }


@daily_export(
    group_name=REPORT_GROUP,
    kinds={"pdf"},
    deps=[WEEK_OF_METRICS],
    description=(
        "Weekly health report (PDF) of the 7 UTC days ending on the partition's day: summary "
        "with changes versus the previous 7 days, charts (availability, latency, failures, "
        "composition), top and bottom proxies, frequent errors, sources ranked by health, and "
        "the sha256 of the proxy_metrics manifests it agrees with."
    ),
)
def health_report(
    context: DayContext,
    config: HealthReportConfig,
    proxywhirl: ProxyWhirlSource,
    export_store: ExportStore,
) -> RenderedExport:
    day = partition_day(context.partition_key)
    branding = config.branding()
    with proxywhirl.open_snapshot() as snapshot:
        week = week_figures(snapshot, day, min_checks=config.min_checks)
        exports = metrics_exports(export_store.open(), snapshot, [d.day for d in week.days])
    missing = [e.day.isoformat() for e in exports if e.manifest_sha256 is None]
    if missing:
        context.log.info(f"no proxy_metrics export for {', '.join(missing)}: computed from source")
    content, pages = render_health_report(week, exports, branding)
    context.log.info(f"health report {week.start} .. {week.end}: {pages} pages")
    return RenderedExport(
        content=content,
        records=pages,
        options=RenderedOptions(format="pdf"),
        source=report_source(proxywhirl, week, exports),
    )
