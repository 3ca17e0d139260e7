"""backfill_start_sensor: a new job backfill gets the daemon's runs from the sensor daemon's
loop, once, and the backfill daemon then launches nothing more.

The sensor daemon and the backfill daemon are Dagster's own iterations
(``execute_sensor_iteration``, ``execute_backfill_iteration``) on a real instance and an
in-process workspace of the code location; runs are queued, not executed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from dagster import (
    AssetKey,
    BackfillPolicy,
    DagsterInstance,
    DagsterRun,
    DailyPartitionsDefinition,
    PartitionKeyRange,
    RunsFilter,
    SensorEvaluationContext,
)
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.execution.job_backfill import submit_backfill_runs
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context, instance_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.backfill import execute_backfill_iteration
from dagster._daemon.sensor import execute_sensor_iteration

from export_assets.definitions import defs
from export_assets.defs.exports.daily import DAYS_PER_BACKFILL_RUN
from export_assets.defs.operations.audit import BACKFILL_TAG, RANGE_END_TAG, RANGE_START_TAG
from export_assets.defs.operations.backfill_start import (
    FRESH_SECONDS,
    STARTED_JOBS,
    backfill_start_sensor,
    partition_runs,
)

LOCATION = "export_assets"
JOB = "daily_export_job"
DAYS = [f"2026-10-{day:02d}" for day in range(1, 13)]  # 12 days: a run of 10 and one of 2
USER_TAG = {"export/requested_by": "ops@example.com"}
QUEUED = {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"}
NO_COMPUTE_LOGS = {
    "module": "dagster.core.storage.noop_compute_log_manager",
    "class": "NoOpComputeLogManager",
}
log = logging.getLogger("test_backfill_start")


@pytest.fixture
def workspace() -> Iterator[WorkspaceProcessContext]:
    """The code location in process, on an instance whose runs queue (nothing executes)."""
    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            module_name="export_assets.definitions", attribute="defs"
        ),
        location_name=LOCATION,
    )
    overrides = {"run_coordinator": QUEUED, "compute_logs": NO_COMPUTE_LOGS}
    with instance_for_test(overrides=overrides) as instance:
        target = InProcessWorkspaceLoadTarget(origin)
        with create_test_daemon_workspace_context(target, instance) as context:
            yield context


def add_backfill(
    workspace: WorkspaceProcessContext, *, job: str = JOB, age: float = 0.0, **fields: Any
) -> str:
    """A job backfill as the webserver records one (``launchPartitionBackfill``)."""
    location = workspace.create_request_context().get_code_location(LOCATION)
    partition_set = location.get_repository("__repository__").get_partition_set(
        f"{job}_partition_set"
    )
    backfill_id = f"b{time.monotonic_ns()}"
    values: dict[str, Any] = {
        "backfill_id": backfill_id,
        "partition_set_origin": partition_set.get_remote_origin(),
        "status": BulkActionStatus.REQUESTED,
        "partition_names": DAYS,
        "from_failure": False,
        "reexecution_steps": None,
        "tags": USER_TAG,
        "backfill_timestamp": time.time() - age,
    }
    workspace.instance.add_backfill(PartitionBackfill(**{**values, **fields}))
    return backfill_id


def sensor_daemon_loop(workspace: WorkspaceProcessContext) -> None:
    with ThreadPoolExecutor(2) as threads:
        list(execute_sensor_iteration(workspace, log, threads, None, {}))
        threads.shutdown(wait=True)


def backfill_daemon_loop(workspace: WorkspaceProcessContext) -> None:
    list(execute_backfill_iteration(workspace, log))


def backfill_runs(instance: DagsterInstance, backfill_id: str) -> list[DagsterRun]:
    return list(instance.get_runs(RunsFilter(tags={BACKFILL_TAG: backfill_id})))


def ranges(runs: list[DagsterRun]) -> list[tuple[str, str]]:
    return sorted((run.tags[RANGE_START_TAG], run.tags[RANGE_END_TAG]) for run in runs)


EXPECTED = [(DAYS[0], DAYS[DAYS_PER_BACKFILL_RUN - 1]), (DAYS[DAYS_PER_BACKFILL_RUN], DAYS[-1])]


def started_by_sensor(
    workspace: WorkspaceProcessContext, **fields: Any
) -> tuple[str, list[DagsterRun]]:
    """A new backfill, one loop of the sensor daemon: its id and the runs it launched, which
    are the daemon's ranges."""
    backfill_id = add_backfill(workspace, **fields)
    sensor_daemon_loop(workspace)
    runs = backfill_runs(workspace.instance, backfill_id)
    assert ranges(runs) == EXPECTED
    return backfill_id, runs


def test_the_sensor_launches_the_daemons_runs_and_the_daemon_adds_none(
    workspace: WorkspaceProcessContext,
) -> None:
    instance = workspace.instance
    backfill_id, runs = started_by_sensor(workspace)
    for run in runs:
        assert run.job_name == JOB
        assert run.tags["dagster/sensor_name"] == "backfill_start_sensor"
        assert run.tags["export/requested_by"] == USER_TAG["export/requested_by"]
        assert run.tags["export/template"] == JOB  # the job's tag, on runs of every launch

    backfill_daemon_loop(workspace)  # skips the days that have runs: nothing twice
    assert ranges(backfill_runs(instance, backfill_id)) == EXPECTED
    backfill = instance.get_backfill(backfill_id)
    assert backfill is not None
    assert backfill.status == BulkActionStatus.REQUESTED  # until its runs finish

    sensor_daemon_loop(workspace)  # the next loop: the backfill has its runs
    assert ranges(backfill_runs(instance, backfill_id)) == EXPECTED


def launched_as(run: DagsterRun) -> dict[str, Any]:
    """What a run executes and how it is labelled, less who launched it."""
    tags = {
        key: value
        for key, value in run.tags.items()
        if key not in {BACKFILL_TAG, "dagster/sensor_name", "dagster/run_key", "dagster/tick"}
    }
    return {
        "job": run.job_name,
        "assets": run.asset_selection,
        "checks": run.asset_check_selection,
        "config": run.run_config,
        "tags": tags,
        "steps": run.step_keys_to_execute,
    }


@pytest.mark.parametrize(
    "chosen", [None, [AssetKey("validation_events")]], ids=["whole-job", "one-asset"]
)
def test_the_sensors_runs_are_the_runs_the_daemon_launches(
    workspace: WorkspaceProcessContext, chosen: list[AssetKey] | None
) -> None:
    instance = workspace.instance
    by_daemon = add_backfill(workspace, asset_selection=chosen)
    backfill_daemon_loop(workspace)
    by_sensor = add_backfill(workspace, asset_selection=chosen)
    sensor_daemon_loop(workspace)
    daemons = sorted(map(launched_as, backfill_runs(instance, by_daemon)), key=str)
    sensors = sorted(map(launched_as, backfill_runs(instance, by_sensor)), key=str)
    assert len(daemons) == len(EXPECTED)
    assert {run["tags"]["export/template"] for run in sensors} == {JOB}
    assert sensors == daemons


def test_a_backfill_of_some_of_the_jobs_assets_runs_those_assets_only(
    workspace: WorkspaceProcessContext,
) -> None:
    chosen = [AssetKey("validation_events"), AssetKey("proxy_list")]
    _, runs = started_by_sensor(workspace, asset_selection=chosen)
    assert {run.asset_selection for run in runs} == {frozenset(chosen)}


def test_a_backfill_the_daemon_started_is_left_to_it(
    workspace: WorkspaceProcessContext,
) -> None:
    instance = workspace.instance
    backfill_id = add_backfill(workspace)
    backfill_daemon_loop(workspace)
    by_daemon = backfill_runs(instance, backfill_id)
    assert ranges(by_daemon) == EXPECTED
    assert not any("dagster/sensor_name" in run.tags for run in by_daemon)

    sensor_daemon_loop(workspace)
    assert len(backfill_runs(instance, backfill_id)) == len(EXPECTED)


def test_a_backfill_the_daemon_is_submitting_is_left_to_it(
    workspace: WorkspaceProcessContext,
) -> None:
    """The daemon has launched a first run and not yet recorded how far it got."""
    instance = workspace.instance
    backfill_id = add_backfill(workspace)
    backfill = instance.get_backfill(backfill_id)
    assert backfill is not None
    first = PartitionKeyRange(*EXPECTED[0])
    list(submit_backfill_runs(instance, workspace.create_request_context, backfill, [first]))
    assert instance.get_backfill(backfill_id).last_submitted_partition_name is None  # type: ignore[union-attr]

    sensor_daemon_loop(workspace)
    assert ranges(backfill_runs(instance, backfill_id)) == [EXPECTED[0]]


@pytest.mark.parametrize(
    "fields",
    [
        {"age": FRESH_SECONDS + 60},  # old: the daemon has looked at it
        {"from_failure": True},  # re-executes failed runs: the daemon's
        {"reexecution_steps": ["validation_events"]},
        {"status": BulkActionStatus.CANCELING},
        {"last_submitted_partition_name": DAYS[4]},  # the daemon has begun it
    ],
    ids=["old", "from-failure", "steps", "canceling", "begun"],
)
def test_backfills_the_daemon_must_handle_are_left_to_it(
    workspace: WorkspaceProcessContext, fields: dict[str, Any]
) -> None:
    backfill_id = add_backfill(workspace, **fields)
    sensor_daemon_loop(workspace)
    assert backfill_runs(workspace.instance, backfill_id) == []


def test_a_backfill_of_days_the_job_does_not_have_is_left_to_the_daemon(
    workspace: WorkspaceProcessContext,
) -> None:
    """The webserver refuses such a backfill; one written by other means is not the sensor's
    to judge: it starts nothing for it (the daemon reports the days), and the tick does not
    fail."""
    backfill_id = add_backfill(workspace, partition_names=["1999-01-01", DAYS[0]])
    context = SensorEvaluationContext(  # as the sensor daemon builds it, for this location
        instance_ref=None,
        repository_name="__repository__",
        repository_def=defs.get_repository_def(),
        instance=workspace.instance,
    )
    result = backfill_start_sensor.evaluate_tick(context)
    assert not result.run_requests
    assert result.skip_message == "no new backfill of this location's jobs"
    assert backfill_runs(workspace.instance, backfill_id) == []


def test_a_backfill_of_another_location_is_not_started(
    workspace: WorkspaceProcessContext,
) -> None:
    backfill_id = add_backfill(workspace)
    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            module_name="export_assets.definitions", attribute="defs"
        ),
        location_name="export_assets_celery",  # the same code loaded as another location
    )
    context = SensorEvaluationContext(  # as the sensor daemon builds it, in another location
        instance_ref=None,
        repository_name="__repository__",
        repository_def=defs.get_repository_def(),
        instance=workspace.instance,
        code_location_origin=origin,
    )
    assert not backfill_start_sensor.evaluate_tick(context).run_requests
    assert backfill_runs(workspace.instance, backfill_id) == []


def test_runs_are_cut_where_days_stop_being_consecutive_and_at_the_policys_size() -> None:
    days = DailyPartitionsDefinition(start_date="2026-01-01")
    keys = ["2026-01-05", "2026-01-01", "2026-01-02", "2026-01-03", "2026-01-07", "2026-01-08"]
    assert partition_runs(days, BackfillPolicy.multi_run(2), keys) == [
        ("2026-01-01", "2026-01-02"),
        ("2026-01-03", "2026-01-03"),
        ("2026-01-05", "2026-01-05"),
        ("2026-01-07", "2026-01-08"),
    ]
    assert partition_runs(days, BackfillPolicy.single_run(), keys) == [
        ("2026-01-01", "2026-01-03"),
        ("2026-01-05", "2026-01-05"),
        ("2026-01-07", "2026-01-08"),
    ]
    assert partition_runs(days, None, keys[:2]) == [
        ("2026-01-05", "2026-01-05"),
        ("2026-01-01", "2026-01-01"),
    ]
    with pytest.raises(KeyError):
        partition_runs(days, BackfillPolicy.multi_run(2), ["2025-12-31"])


def test_every_partitioned_job_of_the_location_is_started_by_the_sensor() -> None:
    partitioned = {
        job.name
        for job in defs.resolve_all_job_defs()
        if job.partitions_def is not None and not job.name.startswith("__")
    }
    assert partitioned == {job.name for job in STARTED_JOBS}
