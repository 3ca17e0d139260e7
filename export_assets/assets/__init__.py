"""One module per export domain."""

from export_assets.assets.pool_config import pool_config
from export_assets.assets.proxy_changes import proxy_changes
from export_assets.assets.proxy_list import proxy_list
from export_assets.assets.proxy_logs import proxy_logs
from export_assets.assets.proxy_metrics import proxy_metrics
from export_assets.assets.validation_events import validation_events

EXPORT_ASSETS = [
    proxy_list,
    proxy_changes,
    validation_events,
    proxy_metrics,
    proxy_logs,
    pool_config,
]
"""Every daily export asset, in the order the UI lists them."""

from export_assets.assets.analytics_workbook import analytics_workbook  # noqa: E402
from export_assets.assets.health_report import health_report  # noqa: E402

REPORT_ASSETS = [health_report, analytics_workbook]
"""The weekly reports (group proxywhirl_reports), built from the exports' source."""

__all__ = [
    "EXPORT_ASSETS",
    "pool_config",
    "proxy_changes",
    "proxy_list",
    "proxy_logs",
    "proxy_metrics",
    "validation_events",
]
