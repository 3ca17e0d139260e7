"""What every daily export asset shares: UTC-day partitions, one day per backfill run, a group."""

from collections.abc import Callable
from typing import Any

from dagster import AssetsDefinition, asset

from export_assets.partitions import daily_partitions, one_partition_per_run

EXPORT_GROUP = "proxywhirl_exports"


def daily_export(**decorator: Any) -> Callable[[Callable[..., Any]], AssetsDefinition]:
    """``@asset`` for an export domain, with the partitioning every export shares."""
    make: Callable[[Callable[..., Any]], AssetsDefinition] = asset(
        partitions_def=daily_partitions,
        backfill_policy=one_partition_per_run,
        group_name=EXPORT_GROUP,
        **decorator,
    )
    return make
