"""The one partitioning of every export: UTC days."""

from __future__ import annotations

from datetime import date, timedelta

from dagster import DailyPartitionsDefinition

from export_assets.settings import Settings, current_settings

DEFAULT_PARTITION_START: str = Settings.partition_start


def partition_start() -> str:
    """The first day of the partition set: ``EXPORT_PARTITION_START`` or the default."""
    return current_settings().partition_start  # checked there: a bad date names the fix


# Read when the code location loads: the partition set is part of its definition.
# end_offset=1 adds today's open partition, which sensors refresh as data arrives.
daily_partitions = DailyPartitionsDefinition(
    start_date=partition_start(), timezone="UTC", end_offset=1, fmt="%Y-%m-%d"
)


def partition_day(partition_key: str) -> date:
    """The UTC day a partition key names; the partition covers [day, day + 1)."""
    return date.fromisoformat(partition_key)


def next_day(day: date) -> date:
    """The day after ``day``: its midnight closes ``day``'s partition."""
    return day + timedelta(days=1)
