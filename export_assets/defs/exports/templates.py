"""The export templates and the on-demand request assets: every copy of a day that is not
the daily record, each under its own key and folder.

A template is a domain's export with other fixed settings (``backup/proxy_list``: the pool
as JSON), published under ``{template}/{asset}/dt={day}/`` with its own manifests, checks,
history and retention. A request asset (``requests/proxy_list``) takes every option in its
run config, filters included, and publishes under ``requests/{request}/{asset}/dt={day}/``,
``request`` being a name its run config gives. Neither can write a daily record's files.
"""

from __future__ import annotations

from export_assets.defs.reports.analytics_workbook import analytics_workbook
from export_assets.defs.exports.daily import export_request, export_template
from export_assets.defs.operations.export_audit_log import export_audit_log
from export_assets.defs.reports.health_report import health_report
from export_assets.defs.exports.pool_config import pool_config
from export_assets.defs.exports.proxy_changes import proxy_changes
from export_assets.defs.exports.proxy_list import proxy_list
from export_assets.defs.exports.proxy_logs import proxy_logs
from export_assets.defs.exports.proxy_metrics import proxy_metrics
from export_assets.defs.exports.validation_events import validation_events

BACKUP = "backup"
ANALYTICS = "analytics"
COMPLIANCE = "compliance"

_backup_pool = export_template(
    proxy_list, BACKUP, "Backup template: the day's pool as JSON.", format="json"
)
BACKUP_ASSETS = [
    _backup_pool,
    # After the pool: a run that cannot read the database publishes no half a backup.
    export_template(
        pool_config, BACKUP, "Backup template: the config as JSON, after the pool.",
        after=[_backup_pool], format="json",
    ),
]
ANALYTICS_ASSETS = [
    export_template(
        validation_events, ANALYTICS, "Analytics template: the day's checks as Parquet.",
        format="parquet",
    ),
    export_template(
        proxy_metrics, ANALYTICS, "Analytics template: the day's metrics as Parquet.",
        format="parquet",
    ),
]
COMPLIANCE_ASSETS = [
    export_template(
        proxy_logs, COMPLIANCE, "Compliance template: the day's log records, credentials "
        "masked, as gzip-compressed JSON lines.", format="jsonl", compression="gzip",
    ),
]
TEMPLATE_ASSETS = [*BACKUP_ASSETS, *ANALYTICS_ASSETS, *COMPLIANCE_ASSETS]
"""Every template asset (group proxywhirl_templates)."""

REQUEST_ASSETS = [
    export_request(asset)
    for asset in (
        proxy_list, proxy_changes, validation_events, proxy_metrics, proxy_logs, pool_config,
        health_report, analytics_workbook, export_audit_log,
    )
]
"""One on-demand asset per domain (group proxywhirl_requests)."""
