"""Schedules: the daily export of the day that just ended, the weekly reports, retention.

Cron and timezone come from the environment when the code location loads
(``EXPORT_DAILY_CRON``, ``EXPORT_WEEKLY_CRON``, ``EXPORT_RETENTION_CRON``,
``EXPORT_SCHEDULE_TIMEZONE``). Whatever the timezone, partitions are UTC days and a tick
exports the last UTC day that was complete at the tick's scheduled time.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from export_assets.audit import REQUESTED_BY_TAG, TEMPLATE_TAG
from export_assets.jobs import daily_export_job, weekly_report_job
from export_assets.partitions import partition_start
from export_assets.retention import retention_job

DEFAULT_DAILY_CRON = "15 0 * * *"  # 00:15: the day that just ended is complete
DEFAULT_WEEKLY_CRON = "30 0 * * 1"  # Mondays 00:30: the week ending on Sunday
DEFAULT_RETENTION_CRON = "0 2 * * *"
DEFAULT_AUDIT_CRON = "0 1 * * *"  # after the daily export
DEFAULT_TIMEZONE = "UTC"


def run_tags(requested_by: str, template: str) -> dict[str, str]:
    """The audit tags of a run: who asked (a user, or a schedule/sensor) and which job."""
    return {REQUESTED_BY_TAG: requested_by, TEMPLATE_TAG: template}


def last_closed_day(moment: datetime) -> str:
    """The partition key of the last UTC day that ended at or before ``moment``."""
    return (moment.astimezone(UTC).date() - timedelta(days=1)).isoformat()


def _setting(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def build_partition_schedule(
    job_name: str,
    *,
    name: str,
    cron_schedule: str,
    timezone: str = DEFAULT_TIMEZONE,
    description: str,
    default_status: DefaultScheduleStatus = DefaultScheduleStatus.STOPPED,
) -> ScheduleDefinition:
    """A schedule running the job ``job_name`` for the last closed UTC day at each tick.

    The run key is the partition, so a tick evaluated twice starts one run.
    """

    @schedule(
        name=name,
        job_name=job_name,
        cron_schedule=cron_schedule,
        execution_timezone=timezone,
        description=description,
        default_status=default_status,
    )
    def _partition_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        moment = context.scheduled_execution_time or datetime.now(UTC)
        partition = last_closed_day(moment)
        if partition < partition_start():
            return SkipReason(
                f"{partition} is before the first partition ({partition_start()}, "
                "EXPORT_PARTITION_START)"
            )
        return RunRequest(run_key=partition, partition_key=partition, tags=run_tags(name, job_name))

    return _partition_schedule


def build_daily_export_schedule(
    cron_schedule: str | None = None, timezone: str | None = None
) -> ScheduleDefinition:
    """``daily_export_schedule``: every export of the day that just ended."""
    return build_partition_schedule(
        daily_export_job.name,
        name="daily_export_schedule",
        cron_schedule=cron_schedule or _setting("EXPORT_DAILY_CRON", DEFAULT_DAILY_CRON),
        timezone=timezone or _setting("EXPORT_SCHEDULE_TIMEZONE", DEFAULT_TIMEZONE),
        description="Runs daily_export_job for the UTC day that just ended "
        "(EXPORT_DAILY_CRON, default 00:15).",
        default_status=_default_status(),
    )


def build_weekly_report_schedule(
    cron_schedule: str | None = None, timezone: str | None = None
) -> ScheduleDefinition:
    """``weekly_report_schedule``: the health report and workbook of the week just ended."""
    return build_partition_schedule(
        weekly_report_job.name,
        name="weekly_report_schedule",
        cron_schedule=cron_schedule or _setting("EXPORT_WEEKLY_CRON", DEFAULT_WEEKLY_CRON),
        timezone=timezone or _setting("EXPORT_SCHEDULE_TIMEZONE", DEFAULT_TIMEZONE),
        description="Runs weekly_report_job (health report + workbook) for the 7 UTC days "
        "ending on the day before the tick (EXPORT_WEEKLY_CRON, default Mondays 00:30).",
        default_status=_default_status(),
    )


def build_retention_schedule(
    cron_schedule: str | None = None, timezone: str | None = None
) -> ScheduleDefinition:
    """``retention_schedule``: the retention job (its run config defaults: 30 days)."""

    @schedule(
        name="retention_schedule",
        job=retention_job,
        cron_schedule=cron_schedule or _setting("EXPORT_RETENTION_CRON", DEFAULT_RETENTION_CRON),
        execution_timezone=timezone or _setting("EXPORT_SCHEDULE_TIMEZONE", DEFAULT_TIMEZONE),
        description="Deletes expired export partitions (EXPORT_RETENTION_CRON, default 02:00; "
        "EXPORT_RETENTION_DAYS, default 30).",
        default_status=_default_status(),
    )
    def retention_schedule(context: ScheduleEvaluationContext) -> RunRequest:
        moment = context.scheduled_execution_time or datetime.now(UTC)
        return RunRequest(
            run_key=moment.astimezone(UTC).isoformat(),
            tags=run_tags("retention_schedule", retention_job.name),
        )

    return retention_schedule


def _default_status() -> DefaultScheduleStatus:
    # EXPORT_SCHEDULES_RUNNING=1 starts them with the daemon, without a click in the UI.
    running = os.environ.get("EXPORT_SCHEDULES_RUNNING", "").strip().lower()
    return (
        DefaultScheduleStatus.RUNNING
        if running in {"1", "true", "yes"}
        else DefaultScheduleStatus.STOPPED
    )


def export_schedules() -> list[Any]:
    """Every schedule of the code location, configured from the environment."""
    return [
        build_daily_export_schedule(),
        build_weekly_report_schedule(),
        build_retention_schedule(),
        build_audit_log_schedule(),
    ]


audit_log_job = define_asset_job(
    name="audit_log_job",
    selection=AssetSelection.assets("export_audit_log"),
    run_tags={TEMPLATE_TAG: "audit_log_job"},
    description="The day's audit trail (export_audit_log) as gzip-compressed CSV.",
)


def build_audit_log_schedule(
    cron_schedule: str | None = None, timezone: str | None = None
) -> ScheduleDefinition:
    """``audit_log_schedule``: the audit trail of the day that just ended."""
    return build_partition_schedule(
        audit_log_job.name,
        name="audit_log_schedule",
        cron_schedule=cron_schedule or _setting("EXPORT_AUDIT_CRON", DEFAULT_AUDIT_CRON),
        timezone=timezone or _setting("EXPORT_SCHEDULE_TIMEZONE", DEFAULT_TIMEZONE),
        description="Exports the audit trail of the UTC day that just ended "
        "(EXPORT_AUDIT_CRON, default 01:00).",
        default_status=_default_status(),
    )
