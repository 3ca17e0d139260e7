"""A backfill run covers a range of days: each day is still its own partition.

Its own data file, manifest (chained to the day before), lease, materialization metadata and
check results, exactly as if each day had been its own run.
"""

import itertools
from pathlib import Path
from typing import Any

from dagster import AssetCheckEvaluation, DagsterEventType, DagsterInstance, materialize

from export_assets.defs.exports import proxy_list, validation_events
from export_assets.defs.exports.daily import INTACT, NO_LEAK
from export_assets.lib.exports.manifest import ExportManifest
from export_assets.lib.sample import SampleDeployment
from export_assets_tests.conftest import SAMPLE_END, export_resources

DAYS = ["2026-11-18", "2026-11-19", SAMPLE_END.isoformat()]
RANGE = {
    "dagster/asset_partition_range_start": DAYS[0],
    "dagster/asset_partition_range_end": DAYS[-1],
}


def manifest(exports: Path, asset: str, day: str) -> ExportManifest:
    return ExportManifest.from_json((exports / asset / f"dt={day}" / "_manifest.json").read_bytes())


def check_of(event: Any) -> AssetCheckEvaluation:
    data = event.event_specific_data
    assert isinstance(data, AssetCheckEvaluation)
    return data


def test_one_run_of_three_days_publishes_three_partitions(
    sample_deployment: SampleDeployment, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "ranged"
    result = materialize(
        [proxy_list, validation_events],
        tags=RANGE,
        instance=instance,
        resources=export_resources(sample_deployment.database, exports),
    )
    assert result.success

    materialized = {
        (e.materialization.asset_key.path[-1], e.materialization.partition or ""): {
            k: v.value for k, v in e.materialization.metadata.items()
        }
        for e in result.get_asset_materialization_events()
    }
    assert set(materialized) == {(a, d) for a in ("proxy_list", "validation_events") for d in DAYS}
    for (asset, day), metadata in materialized.items():
        written = manifest(exports, asset, day)
        assert written.run_id == result.run_id
        # Each day's materialization carries that day's own facts.
        assert metadata["dagster/partition_row_count"] == written.total_rows
        assert metadata["sha256"] == written.files[0].sha256
        assert str(metadata["dagster/uri"]).endswith(f"{asset}-{day}.csv.gz")
    # The manifests chain day to day, as separate runs would have.
    for earlier, later in itertools.pairwise(DAYS):
        previous = manifest(exports, "proxy_list", later).previous_manifest
        assert previous is not None
        assert previous.partition == earlier

    # Each check of each day is recorded against its own partition.
    logged = instance.all_logs(result.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    evaluations = [check_of(entry.dagster_event) for entry in logged]
    seen = {(e.asset_key.path[-1], e.check_name, e.partition) for e in evaluations}
    assert seen == {
        (asset, check, day)
        for asset in ("proxy_list", "validation_events")
        for check in (INTACT, NO_LEAK)
        for day in DAYS
    }
    assert all(e.passed for e in evaluations if e.check_name == INTACT)


def test_a_ranged_run_writes_what_single_day_runs_write(
    sample_deployment: SampleDeployment, tmp_path: Path, instance: DagsterInstance
) -> None:
    resources = export_resources(sample_deployment.database, tmp_path / "ranged")
    assert materialize(
        [validation_events], tags=RANGE, instance=instance, resources=resources
    ).success
    for day in DAYS:
        single = export_resources(sample_deployment.database, tmp_path / "single")
        assert materialize(
            [validation_events], partition_key=day, instance=instance, resources=single
        ).success
        name = f"validation_events/dt={day}/validation_events-{day}.csv.gz"
        assert (tmp_path / "ranged" / name).read_bytes() == (
            tmp_path / "single" / name
        ).read_bytes()
