"""The export domain's jobs: the daily record of every domain, and the named templates.

Each job tags its runs ``export/template`` with its own name: the audit trail and the
instance's concurrency limits (dagster.yaml) read it. It is a job tag, not only a run tag:
Dagster copies a job's tags onto the runs of every launch, the backfill daemon's included,
which passes a job's ``run_tags`` over.
"""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from export_assets.defs.exports.daily import DAYS_PER_BACKFILL_RUN, EXPORT_GROUP
from export_assets.defs.exports.templates import ANALYTICS_ASSETS, BACKUP_ASSETS, COMPLIANCE_ASSETS
from export_assets.defs.operations.audit import TEMPLATE_TAG

daily_export_job, backup_job, analytics_job, compliance_logs_job = (
    define_asset_job(
        name=name, tags={TEMPLATE_TAG: name}, selection=selection, description=description
    )
    for name, selection, description in (
        (
            "daily_export_job",
            AssetSelection.groups(EXPORT_GROUP),
            "Every daily export of one UTC day (each asset's defaults), to EXPORT_DESTINATION. "
            f"A backfill runs up to {DAYS_PER_BACKFILL_RUN} days per run.",
        ),
        (
            "backup_job",
            AssetSelection.assets(*BACKUP_ASSETS),
            "Backup template: the day's pool and the config, as JSON, under backup/.",
        ),
        (
            "analytics_job",
            AssetSelection.assets(*ANALYTICS_ASSETS),
            "Analytics template: the day's validation events and metrics, as Parquet, under "
            "analytics/.",
        ),
        (
            "compliance_logs_job",
            AssetSelection.assets(*COMPLIANCE_ASSETS),
            "Compliance template: the day's log records, credentials masked, as "
            "gzip-compressed JSON lines, under compliance/.",
        ),
    )
)

DAILY_JOBS = [daily_export_job, backup_job, analytics_job, compliance_logs_job]
"""The daily record and the templates: every job that exports a day."""
