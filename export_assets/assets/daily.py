"""What every daily export asset shares: UTC-day partitions, one day per backfill run, a group."""

import functools
from collections.abc import Callable
from typing import Any

from dagster import AssetExecutionContext, AssetsDefinition, asset

from export_assets.partitions import daily_partitions, one_partition_per_run
from export_assets.retries import (
    export_retry_policy,
    fail_fast_on_permanent_errors,
    stop_on_interrupt,
)
from export_assets.run_sweep import record_run_process

EXPORT_GROUP = "proxywhirl_exports"
REPORT_GROUP = "proxywhirl_reports"
# The concurrency pool of every export's write (dagster.yaml bounds it across all runs).
EXPORT_WRITERS_POOL = "s3_writers"


def daily_export(
    group_name: str = EXPORT_GROUP, **decorator: Any
) -> Callable[[Callable[..., Any]], AssetsDefinition]:
    """``@asset`` for an export domain, with the partitioning every export shares.

    Every export retries transient faults (exponential backoff with jitter) and fails at
    once on permanent ones (see ``export_assets.retries``), and an interrupted one (SIGTERM,
    Ctrl-C, terminate) stops without a retry. Its step records the run's process in the
    run's tags first, so that a run killed while holding its pool slot is failed and freed
    by the dead-run sweep (``export_assets.run_sweep``).
    """
    make: Callable[[Callable[..., Any]], AssetsDefinition] = asset(
        partitions_def=daily_partitions,
        backfill_policy=one_partition_per_run,
        group_name=group_name,
        retry_policy=export_retry_policy(),
        pool=EXPORT_WRITERS_POOL,
        **decorator,
    )

    def define(compute: Callable[..., Any]) -> AssetsDefinition:
        # functools.wraps keeps the signature Dagster reads (context, config, resources).
        @functools.wraps(compute)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            context = next(
                (a for a in (*args, *kwargs.values()) if isinstance(a, AssetExecutionContext)),
                None,
            )
            # From the step's first instruction: an interrupt anywhere in it is never retried.
            with stop_on_interrupt():
                if context is not None:
                    record_run_process(context)
                with fail_fast_on_permanent_errors():
                    return compute(*args, **kwargs)

        return make(guarded)

    return define
