"""The export domain's jobs: the daily record of every domain, and the named templates."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from export_assets.defs.exports.daily import EXPORT_GROUP
from export_assets.defs.exports.templates import ANALYTICS_ASSETS, BACKUP_ASSETS, COMPLIANCE_ASSETS

daily_export_job = define_asset_job(
    name="daily_export_job",
    run_tags={"export/template": "daily_export_job"},
    selection=AssetSelection.groups(EXPORT_GROUP),
    description="Every daily export of one UTC day (each asset's defaults), to "
    "EXPORT_DESTINATION. A backfill runs one day per run.",
)

backup_job = define_asset_job(
    name="backup_job",
    run_tags={"export/template": "backup_job"},
    selection=AssetSelection.assets(*BACKUP_ASSETS),
    description="Backup template: the day's pool and the config, as JSON, under backup/.",
)

analytics_job = define_asset_job(
    name="analytics_job",
    run_tags={"export/template": "analytics_job"},
    selection=AssetSelection.assets(*ANALYTICS_ASSETS),
    description="Analytics template: the day's validation events and metrics, as Parquet, "
    "under analytics/.",
)

compliance_logs_job = define_asset_job(
    name="compliance_logs_job",
    run_tags={"export/template": "compliance_logs_job"},
    selection=AssetSelection.assets(*COMPLIANCE_ASSETS),
    description="Compliance template: the day's log records, credentials masked, as "
    "gzip-compressed JSON lines, under compliance/.",
)

DAILY_JOBS = [daily_export_job, backup_job, analytics_job, compliance_logs_job]
"""The daily record and the templates: every job that exports a day."""
