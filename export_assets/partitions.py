"""The one partitioning of every export: UTC days."""

from __future__ import annotations

import os
from datetime import date, timedelta

from dagster import DailyPartitionsDefinition

DEFAULT_PARTITION_START = "2025-01-01"


def partition_start() -> str:
    """The first day of the partition set: ``EXPORT_PARTITION_START`` or the default."""
    value = os.environ.get("EXPORT_PARTITION_START", DEFAULT_PARTITION_START).strip()
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"EXPORT_PARTITION_START={value!r} is not a date: write it as YYYY-MM-DD"
        ) from None
    return value


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
