"""The anchor of the launch-latency target: a trivial one-asset code location.

bench/ui_path.py loads it beside export_assets on the same webserver, and compares the
GraphQL launch → queued latency of the two (target T6 of issue 14).
"""

from __future__ import annotations

from dagster import Definitions, asset, define_asset_job


@asset
def trivial() -> int:
    """One constant: the least a run can do."""
    return 1


trivial_job = define_asset_job("trivial_job", selection=[trivial])

defs = Definitions(assets=[trivial], jobs=[trivial_job])
