"""The anchors of the launch-latency target: trivial code locations.

bench/ui_path.py loads them beside export_assets on the same webserver, and compares the
GraphQL launch → queued latency of ``daily_export_job`` with theirs (target T6 of issue 14):

- ``defs`` (location ``trivial``): one unpartitioned asset, the target's anchor;
- ``shaped_defs`` (location ``trivial_shaped``): trivial assets in the shape of
  ``daily_export_job`` (6 daily-partitioned assets, each with 2 blocking check specs),
  doing nothing. Dagster writes one planned event per asset and per check of a run when it
  creates the run, so a launch costs about the same per asset and check whatever the
  definitions are: the ratio to this anchor is what export_assets' own definitions add.
"""

# No "from __future__ import annotations": Dagster reads the context annotation.
import warnings
from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetOut,
    AssetsDefinition,
    DailyPartitionsDefinition,
    Definitions,
    MaterializeResult,
    PreviewWarning,
    asset,
    define_asset_job,
    in_process_executor,
    multi_asset,
)


@asset
def trivial() -> int:
    """One constant: the least a run can do."""
    return 1


trivial_job = define_asset_job("trivial_job", selection=[trivial])

defs = Definitions(assets=[trivial], jobs=[trivial_job])

SHAPED_ASSETS = 6  # daily_export_job's exports
SHAPED_CHECKS = ("intact", "no_leak")  # each export's checks, reported from its own step
SHAPED_GROUP = "trivial_shaped"
_Result = MaterializeResult[Any] | AssetCheckResult
_days = DailyPartitionsDefinition(start_date="2024-01-01")


def _shaped(name: str) -> AssetsDefinition:
    """A daily asset with blocking check specs, declared as the exports declare theirs."""
    with warnings.catch_warnings():  # partitioned check specs are a Dagster preview
        warnings.simplefilter("ignore", PreviewWarning)
        specs = [
            AssetCheckSpec(check, asset=name, blocking=True, partitions_def=_days)
            for check in SHAPED_CHECKS
        ]

    @multi_asset(
        name=name,
        outs={name: AssetOut(group_name=SHAPED_GROUP)},
        partitions_def=_days,
        check_specs=specs,
        can_subset=True,
    )
    def _asset(context: AssetExecutionContext) -> Iterator[_Result]:
        yield MaterializeResult(asset_key=name)
        for check in SHAPED_CHECKS:
            yield AssetCheckResult(asset_key=name, check_name=check, passed=True)

    return _asset


shaped_job = define_asset_job("shaped_job", selection=[f"shaped_{n}" for n in range(SHAPED_ASSETS)])

shaped_defs = Definitions(
    assets=[_shaped(f"shaped_{n}") for n in range(SHAPED_ASSETS)],
    jobs=[shaped_job],
    executor=in_process_executor,
)
