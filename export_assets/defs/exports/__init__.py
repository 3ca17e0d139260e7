"""The export domain: one daily asset per kind of data, their templates and requests, and
the checks that prove each published partition."""

from export_assets.defs.exports.pool_config import pool_config
from export_assets.defs.exports.proxy_changes import proxy_changes
from export_assets.defs.exports.proxy_list import proxy_list
from export_assets.defs.exports.proxy_logs import proxy_logs
from export_assets.defs.exports.proxy_metrics import proxy_metrics
from export_assets.defs.exports.validation_events import validation_events

EXPORT_ASSETS = [
    proxy_list,
    proxy_changes,
    validation_events,
    proxy_metrics,
    proxy_logs,
    pool_config,
]
"""Every daily export asset, in the order the UI lists them."""

__all__ = [
    "EXPORT_ASSETS",
    "pool_config",
    "proxy_changes",
    "proxy_list",
    "proxy_logs",
    "proxy_metrics",
    "validation_events",
]
