"""Schedules: each tick asks for the UTC day that just ended, across month and year ends."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from dagster import RunRequest, build_schedule_context

from export_assets.definitions import defs
from export_assets.defs.operations.schedules import SCHEDULES, build_schedule


def tick(schedule: object, moment: datetime) -> list[RunRequest]:
    # With the code location's repository, Dagster checks the partition key exists.
    context = build_schedule_context(
        scheduled_execution_time=moment, repository_def=defs.get_repository_def()
    )
    data = schedule.evaluate_tick(context)  # type: ignore[attr-defined]
    return list(data.run_requests or [])


@pytest.mark.parametrize(
    ("moment", "partition"),
    [
        (datetime(2026, 11, 21, 0, 15, tzinfo=UTC), "2026-11-20"),
        (datetime(2026, 12, 1, 0, 15, tzinfo=UTC), "2026-11-30"),  # month boundary
        (datetime(2027, 1, 1, 0, 15, tzinfo=UTC), "2026-12-31"),  # year boundary
        (datetime(2028, 3, 1, 0, 15, tzinfo=UTC), "2028-02-29"),  # leap day
    ],
)
def test_daily_tick_exports_the_day_that_just_ended(moment: datetime, partition: str) -> None:
    schedule = build_schedule("daily_export_schedule")
    [request] = tick(schedule, moment)
    assert request.partition_key == partition
    assert request.run_key == partition
    assert request.tags["export/requested_by"] == "daily_export_schedule"
    assert request.tags["export/template"] == "daily_export_job"
    assert schedule.cron_schedule == "15 0 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == "daily_export_job"


def test_weekly_tick_on_monday_reports_the_week_ending_sunday() -> None:
    schedule = build_schedule("weekly_report_schedule")
    assert schedule.cron_schedule == "30 0 * * 1"
    assert schedule.job_name == "weekly_report_job"
    [request] = tick(schedule, datetime(2027, 1, 4, 0, 30, tzinfo=UTC))  # a Monday
    assert request.partition_key == "2027-01-03"
    assert request.tags["export/requested_by"] == "weekly_report_schedule"
    assert request.tags["export/template"] == "weekly_report_job"


def test_cron_and_timezone_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORT_DAILY_CRON", "*/5 * * * *")
    monkeypatch.setenv("EXPORT_SCHEDULE_TIMEZONE", "Europe/Paris")
    schedule = build_schedule("daily_export_schedule")
    assert schedule.cron_schedule == "*/5 * * * *"
    assert schedule.execution_timezone == "Europe/Paris"
    # 00:15 in Paris on 1 January is 23:15 UTC on 31 December: the last complete UTC day
    # is 30 December (partitions are UTC days whatever the schedule's timezone).
    [request] = tick(schedule, datetime(2027, 1, 1, 0, 15, tzinfo=ZoneInfo("Europe/Paris")))
    assert request.partition_key == "2026-12-30"


def test_a_tick_before_the_first_partition_is_skipped() -> None:
    schedule = build_schedule("daily_export_schedule")
    context = build_schedule_context(
        scheduled_execution_time=datetime(2025, 1, 1, 0, 15, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
    )
    data = schedule.evaluate_tick(context)
    assert not data.run_requests
    assert "before the first partition (2025-01-01" in (data.skip_message or "")


def test_retention_schedule_runs_the_retention_job() -> None:
    schedule = build_schedule("retention_schedule")
    assert schedule.job_name == "retention_job"
    [request] = tick(schedule, datetime(2026, 11, 22, 2, 0, tzinfo=UTC))
    assert request.tags["export/requested_by"] == "retention_schedule"
    assert request.tags["export/template"] == "retention_job"


def test_every_schedule_comes_from_the_table_and_names_a_job_of_the_location() -> None:
    schedules = {s.name: s for s in defs.get_repository_def().schedule_defs}
    assert sorted(schedules) == sorted(row.name for row in SCHEDULES)
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    for row in SCHEDULES:
        assert schedules[row.name].job_name == row.job in jobs
        assert schedules[row.name].cron_schedule == row.default_cron
        assert row.cron_variable in (schedules[row.name].description or "")
    # The deep re-read stays off until an operator switches it on, whatever the environment.
    verify = next(row for row in SCHEDULES if row.name == "weekly_verify_exports")
    assert not verify.starts_with_daemon
