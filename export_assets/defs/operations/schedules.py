"""Schedules, from one table (``SCHEDULES``): the daily export of the day that just ended,
the weekly reports, the audit trail, retention and the weekly deep re-read.

Cron and timezone come from the environment when the code location loads (each row's
variable, and ``EXPORT_SCHEDULE_TIMEZONE``). Whatever the timezone, partitions are UTC days
and a tick exports the last UTC day that was complete at the tick's scheduled time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from export_assets.defs.operations.audit import REQUESTED_BY_TAG, TEMPLATE_TAG
from export_assets.defs.partitions import partition_start
from export_assets.settings import current_settings

DEFAULT_TIMEZONE = "UTC"


@dataclass(frozen=True)
class ScheduleRow:
    """One schedule of the code location: which job, when, and for which day."""

    name: str
    job: str
    cron_variable: str
    default_cron: str
    description: str
    closed_day: bool = True
    """Each tick runs the job for the UTC day that just ended (else: no partition)."""
    starts_with_daemon: bool = True
    """Running from the start when EXPORT_SCHEDULES_RUNNING is set (else: always stopped
    until switched on in the UI)."""


SCHEDULES = (
    ScheduleRow(
        "daily_export_schedule",
        "daily_export_job",
        "EXPORT_DAILY_CRON",
        "15 0 * * *",
        "Runs daily_export_job for the UTC day that just ended (default 00:15: the day is "
        "complete).",
    ),
    ScheduleRow(
        "weekly_report_schedule",
        "weekly_report_job",
        "EXPORT_WEEKLY_CRON",
        "30 0 * * 1",
        "Runs weekly_report_job (health report + workbook) for the 7 UTC days ending on the "
        "day before the tick (default Mondays 00:30: the week ending on Sunday).",
    ),
    ScheduleRow(
        "audit_log_schedule",
        "audit_log_job",
        "EXPORT_AUDIT_CRON",
        "0 1 * * *",
        "Exports the audit trail of the UTC day that just ended (default 01:00, after the "
        "daily export).",
    ),
    ScheduleRow(
        "retention_schedule",
        "retention_job",
        "EXPORT_RETENTION_CRON",
        "0 2 * * *",
        "Deletes expired export partitions (default 02:00; EXPORT_RETENTION_DAYS, default 30).",
        closed_day=False,
    ),
    ScheduleRow(
        "weekly_verify_exports",
        "verify_exports_job",
        "EXPORT_VERIFY_CRON",
        "30 3 * * 0",
        "The deep re-read of the last 30 days of every export (default Sundays 03:30); off "
        "until switched on in the UI (Automation).",
        closed_day=False,
        starts_with_daemon=False,
    ),
)
"""Every schedule: cron from its variable (or the default), timezone from
EXPORT_SCHEDULE_TIMEZONE (default UTC)."""


def run_tags(requested_by: str, template: str) -> dict[str, str]:
    """The audit tags of a run: who asked (a user, or a schedule/sensor) and which job."""
    return {REQUESTED_BY_TAG: requested_by, TEMPLATE_TAG: template}


def last_closed_day(moment: datetime) -> str:
    """The partition key of the last UTC day that ended at or before ``moment``."""
    return (moment.astimezone(UTC).date() - timedelta(days=1)).isoformat()


def _setting(name: str, default: str) -> str:
    # Read when the code location loads: cron and timezone are part of the definition.
    return str(current_settings().value(name) or default)


def build_schedule(row: ScheduleRow | str) -> ScheduleDefinition:
    """The schedule of ``row`` (or of the row of that name), configured from the environment.

    A closed-day tick's run key is the partition, so a tick evaluated twice starts one run;
    any other tick's is its scheduled time.
    """
    if isinstance(row, str):
        row = next(r for r in SCHEDULES if r.name == row)
    cron = _setting(row.cron_variable, row.default_cron)
    chosen = row

    @schedule(
        name=row.name,
        job_name=row.job,
        cron_schedule=cron,
        execution_timezone=_setting("EXPORT_SCHEDULE_TIMEZONE", DEFAULT_TIMEZONE),
        description=f"{row.description} Cron: {row.cron_variable} (default {row.default_cron}).",
        default_status=_default_status()
        if row.starts_with_daemon
        else (DefaultScheduleStatus.STOPPED),
    )
    def _tick(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        moment = context.scheduled_execution_time or datetime.now(UTC)
        tags = run_tags(chosen.name, chosen.job)
        if not chosen.closed_day:
            return RunRequest(run_key=moment.astimezone(UTC).isoformat(), tags=tags)
        partition = last_closed_day(moment)
        if partition < partition_start():
            return SkipReason(
                f"{partition} is before the first partition ({partition_start()}, "
                "EXPORT_PARTITION_START)"
            )
        return RunRequest(run_key=partition, partition_key=partition, tags=tags)

    return _tick


def _default_status() -> DefaultScheduleStatus:
    # EXPORT_SCHEDULES_RUNNING=1 starts them with the daemon, without a click in the UI.
    running = current_settings().schedules_running
    return DefaultScheduleStatus.RUNNING if running else DefaultScheduleStatus.STOPPED


def export_schedules() -> list[ScheduleDefinition]:
    """Every schedule of the code location (``SCHEDULES``), configured from the environment."""
    return [build_schedule(row) for row in SCHEDULES]
