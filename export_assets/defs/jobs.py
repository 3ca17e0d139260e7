"""Jobs: the daily export of every domain, and named export templates with their defaults."""

from __future__ import annotations

from dagster import AssetSelection, Field, define_asset_job, multi_or_in_process_executor

from export_assets.defs.exports.daily import EXPORT_GROUP, REPORT_GROUP
from export_assets.defs.exports.templates import ANALYTICS_ASSETS, BACKUP_ASSETS, COMPLIANCE_ASSETS

# The code location's executor (definitions.py): every run executes its steps in the run
# worker's own process, unless its run config asks
# for `execution: {config: {multiprocess: {max_concurrent: N}}}` (the launchpad shows both).
# A day of daily_export_job is 6 asset steps and 12 check steps, each working for ~1 s;
# Dagster's default starts a process per step, each importing the code location (~5 s of
# CPU). Measured on 2 shared cores through the UI path (bench/ui_path.py, issue 14): a 1-day
# backfill 251 s by default vs 48 s in process; 7 days 573 s with a forkserver preloading
# the code location vs 146 s in process (the CLI: 82 s). A large machine is still used: a
# backfill runs one day per run, the instance runs several runs at once (dagster.yaml), and
# the gzip codec deflates on a thread pool inside the step.
export_executor = multi_or_in_process_executor.configured(
    lambda config: config,
    name="export_executor",
    config_schema=Field(
        multi_or_in_process_executor.config_schema.config_type,
        default_value={"in_process": {}},
        is_required=False,
    ),
    description="In process by default; `multiprocess` (a process per step) on request.",
)


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

weekly_report_job = define_asset_job(
    name="weekly_report_job",
    run_tags={"export/template": "weekly_report_job"},
    selection=AssetSelection.groups(REPORT_GROUP),
    description="The weekly reports of the 7 UTC days ending on the partition's day: the PDF "
    "health_report and the analytics_workbook (xlsx).",
)

audit_log_job = define_asset_job(
    name="audit_log_job",
    selection=AssetSelection.assets("export_audit_log"),
    run_tags={"export/template": "audit_log_job"},
    description="The day's audit trail (export_audit_log) as gzip-compressed CSV.",
)

DAILY_JOBS = [daily_export_job, backup_job, analytics_job, compliance_logs_job]
"""The jobs of the export domain: the daily records and the templates."""

EXPORT_JOBS = [*DAILY_JOBS, weekly_report_job]
"""Every job that exports, the weekly reports included."""
