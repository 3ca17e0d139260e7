"""backfill_start_sensor: a new job backfill gets the backfill daemon's runs from the sensor
daemon's loop, once, and the backfill daemon then launches nothing more.

Dagster's own pieces, through their public interfaces: a webserver records backfills as the
UI does (GraphQL ``launchPartitionBackfill``), ``dagster-daemon run`` runs the sensor daemon
and the backfill daemon, and the sensor is also evaluated in this process on the same
instance. The workspace loads the code location twice (``export_assets`` and a twin, as a
workspace may load the same code under two names), so each location's sensor meets the
other's backfills. Every backfill carries a tag whose run limit is 0: its runs stay queued,
nothing executes.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import (
    AssetKey,
    BackfillPolicy,
    DagsterInstance,
    DagsterRun,
    DailyPartitionsDefinition,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
)

from e2e.stack import (
    BIN,
    HOST,
    LAUNCH_BACKFILL,
    ROOT,
    Process,
    base_env,
    free_port,
    graphql,
    http_ok,
    locations_loaded,
    running,
    start,
    stop,
    wait_for,
)
from export_assets.definitions import defs
from export_assets.defs.exports.daily import DAYS_PER_BACKFILL_RUN
from export_assets.defs.operations import backfill_start
from export_assets.defs.operations.audit import BACKFILL_TAG, RANGE_END_TAG, RANGE_START_TAG
from export_assets.defs.operations.backfill_start import (
    STARTED_JOBS,
    backfill_start_sensor,
    partition_runs,
)

LOCATION = "export_assets"
TWIN = "export_assets_twin"  # the same code, loaded as a second location
REPOSITORY = "__repository__"
JOB = "daily_export_job"
SENSOR = "backfill_start_sensor"
DAYS = [f"2026-10-{day:02d}" for day in range(1, 13)]  # 12 days: a run of 10 and one of 2
EXPECTED = [(DAYS[0], DAYS[DAYS_PER_BACKFILL_RUN - 1]), (DAYS[DAYS_PER_BACKFILL_RUN], DAYS[-1])]
CHOSEN = {AssetKey("validation_events"), AssetKey("proxy_list")}  # some of the job's assets
USER_TAG = {"export/requested_by": "ops@example.com"}
HOLD_TAG = "test/hold"  # run limit 0: queued for good
BACKFILL_DAEMON_LOOP_SECONDS = 30  # Dagster's, fixed
on_a_stack = pytest.mark.slow  # the module's webserver (one test adds a daemon): ~2 min
LAUNCHED_BY_DAEMONS = {BACKFILL_TAG, "dagster/sensor_name", "dagster/run_key", "dagster/tick"}

CANCEL = """
mutation($id: String!) {
  cancelPartitionBackfill(backfillId: $id) { __typename ... on PythonError { message } }
}"""


@dataclass
class Stack:
    """The webserver on ``port`` and the instance it records into."""

    port: int
    instance: DagsterInstance
    env: dict[str, str]
    workspace: Path
    logs: Path
    processes: list[Process]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("backfill-start")
    home = base / "dagster_home"
    home.mkdir()
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    config["concurrency"]["runs"]["tag_concurrency_limits"].append({"key": HOLD_TAG, "limit": 0})
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    location = {"module_name": "export_assets.definitions", "attribute": "defs"}
    workspace = base / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {"python_module": {**location, "location_name": name}}
                    for name in (LOCATION, TWIN)
                ]
            }
        )
    )
    env = base_env(home, base / "proxies.db", base / "exports")  # nothing runs: no sample
    port = free_port()
    logs = base / "logs"
    with running([]) as processes:
        web = start(
            "webserver",
            [str(BIN / "dagster-webserver"), "-w", str(workspace), "-h", HOST, "-p", str(port)],
            env,
            logs,
        )
        processes.append(web)
        wait_for("the webserver", lambda: http_ok(f"http://{HOST}:{port}/server_info"), 300, [web])
        wait_for("the code locations", lambda: locations_loaded(port, (LOCATION, TWIN)), 300, [web])
        with DagsterInstance.from_config(str(home)) as instance:
            yield Stack(port, instance, env, workspace, logs, processes)


@contextmanager
def daemon(stack: Stack) -> Iterator[Process]:
    """``dagster-daemon run`` on the stack's instance and workspace, stopped on the way out."""
    process = start(
        "daemon",
        [str(BIN / "dagster-daemon"), "run", "-w", str(stack.workspace)],
        stack.env,
        stack.logs,
    )
    stack.processes.append(process)
    try:
        yield process
    finally:
        stop(process)
        stack.processes.remove(process)


def launch(stack: Stack, job: str | None = JOB, location: str = LOCATION, **params: Any) -> str:
    """A backfill of DAYS as the UI launches it: of ``job``'s partition set (a job page's
    backfill dialog), or with ``job`` None of the assets in ``assetSelection`` (the asset
    graph's); its id."""
    selector = {"repositoryLocationName": location, "repositoryName": REPOSITORY}
    tags = {**USER_TAG, HOLD_TAG: "1"}
    values: dict[str, Any] = {
        "partitionNames": DAYS,
        "tags": [{"key": key, "value": value} for key, value in tags.items()],
        **params,
    }
    if job is not None:
        values["selector"] = {
            "partitionSetName": f"{job}_partition_set",
            "repositorySelector": selector,
        }
    result = graphql(stack.port, LAUNCH_BACKFILL, {"params": values})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    backfill_id: str = result["backfillId"]
    return backfill_id


def assets(*names: str) -> list[dict[str, list[str]]]:
    return [{"path": [name]} for name in names]


def backfill_runs(stack: Stack, backfill_id: str) -> list[DagsterRun]:
    return list(stack.instance.get_runs(RunsFilter(tags={BACKFILL_TAG: backfill_id})))


def runs_of(stack: Stack, *backfill_ids: str, count: int = len(EXPECTED)) -> Any:
    """Each backfill's runs, once every one has ``count`` of them (for ``wait_for``)."""
    runs = {backfill_id: backfill_runs(stack, backfill_id) for backfill_id in backfill_ids}
    return runs if all(len(found) >= count for found in runs.values()) else None


def ranges(runs: Sequence[DagsterRun]) -> list[tuple[str, str]]:
    return sorted((run.tags[RANGE_START_TAG], run.tags[RANGE_END_TAG]) for run in runs)


def launched_as(run: DagsterRun) -> dict[str, Any]:
    """What a run executes and how it is labelled, less who launched it."""
    return {
        "location": run.remote_job_origin.location_name if run.remote_job_origin else None,
        "job": run.job_name,
        "assets": run.asset_selection,
        "checks": run.asset_check_selection,
        "config": run.run_config,
        "tags": {k: v for k, v in run.tags.items() if k not in LAUNCHED_BY_DAEMONS},
        "steps": run.step_keys_to_execute,
    }


def sensor_requests(stack: Stack, backfill_id: str, evaluated_for: str = "") -> list[RunRequest]:
    """One evaluation of the sensor in this process, as the sensor daemon evaluates it in the
    location of backfill ``evaluated_for`` (default: ``backfill_id``'s): the run requests
    for ``backfill_id``."""
    where = stack.instance.get_backfill(evaluated_for or backfill_id)
    assert where is not None
    assert where.partition_set_origin is not None
    context = SensorEvaluationContext(
        instance_ref=None,
        repository_name=REPOSITORY,
        repository_def=defs.get_repository_def(),
        instance=stack.instance,
        code_location_origin=where.partition_set_origin.repository_origin.code_location_origin,
    )
    result = backfill_start_sensor.evaluate_tick(context)
    return [r for r in result.run_requests or [] if r.tags.get(BACKFILL_TAG) == backfill_id]


@on_a_stack
def test_the_sensor_launches_the_daemons_runs_and_the_daemon_adds_none(stack: Stack) -> None:
    """With the daemon up: right after a loop of the backfill daemon, new job backfills get
    their runs from the sensor, in the daemon's ranges; the backfill daemon's next loop adds
    none; the daemon alone launches the same runs; the twin location launches nothing."""
    chosen = assets(*(key.path[0] for key in CHOSEN))
    with daemon(stack) as process:
        # An asset backfill is the backfill daemon's alone: its runs mark one of its loops.
        probe = launch(stack, None, assetSelection=assets("validation_events"))
        probe_runs = wait_for(
            "the probe's runs", lambda: runs_of(stack, probe, count=1), 240, [process]
        )
        assert not any("dagster/sensor_name" in run.tags for run in probe_runs[probe])
        loop_seen = time.monotonic()

        whole, some = launch(stack), launch(stack, assetSelection=chosen)
        by_sensor = wait_for("the sensor's runs", lambda: runs_of(stack, whole, some), 60)
        assert time.monotonic() - loop_seen < BACKFILL_DAEMON_LOOP_SECONDS  # before its loop
        for runs in by_sensor.values():
            assert ranges(runs) == EXPECTED
            assert {run.tags["dagster/sensor_name"] for run in runs} == {SENSOR}
            assert {launched_as(run)["location"] for run in runs} == {LOCATION}
        assert {run.asset_selection for run in by_sensor[some]} == {frozenset(CHOSEN)}

        # The same backfills with the sensors stopped: the backfill daemon's own runs.
        for location in (LOCATION, TWIN):
            subprocess.run(
                [
                    str(BIN / "dagster"),
                    "sensor",
                    "stop",
                    SENSOR,
                    "-w",
                    str(stack.workspace),
                    "-l",
                    location,
                ],
                env=stack.env,
                check=True,
                capture_output=True,
                cwd=ROOT,
            )
        daemons_whole, daemons_some = launch(stack), launch(stack, assetSelection=chosen)
        by_daemon = wait_for(
            "the backfill daemon's runs",
            lambda: runs_of(stack, daemons_whole, daemons_some),
            BACKFILL_DAEMON_LOOP_SECONDS * 3,
            [process],
        )
        # A loop of the backfill daemon has gone over the sensor's backfills, found their
        # runs, and says so (it records no checkpoint when it submits nothing).
        wait_for(
            "the backfill daemon's loop over the sensor's backfills",
            lambda: (
                all(
                    f"Backfill {b} has unfinished runs" in process.log.read_text(errors="replace")
                    for b in (whole, some)
                )
                or None
            ),
            BACKFILL_DAEMON_LOOP_SECONDS * 3,
            [process],
        )
    for sensors, daemons in ((whole, daemons_whole), (some, daemons_some)):
        runs = backfill_runs(stack, sensors)
        assert ranges(runs) == EXPECTED  # nothing twice
        assert not any("dagster/sensor_name" in run.tags for run in by_daemon[daemons])
        assert sorted(map(launched_as, runs), key=str) == sorted(
            map(launched_as, by_daemon[daemons]), key=str
        )
        # A backfill the daemon has begun, its runs there: the sensor leaves it alone.
        assert sensor_requests(stack, daemons) == []


@on_a_stack
def test_a_new_backfill_of_the_locations_job_gets_the_daemons_ranges(stack: Stack) -> None:
    backfill_id = launch(stack)
    requests = sensor_requests(stack, backfill_id)
    assert sorted((r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in requests) == EXPECTED
    for request in requests:
        assert request.job_name == JOB
        assert request.asset_selection is None  # the whole job
        assert request.tags["export/requested_by"] == USER_TAG["export/requested_by"]
        assert request.run_key is not None
        assert request.run_key.startswith(backfill_id)


@on_a_stack
def test_a_backfill_of_the_twin_location_is_left_to_its_own_sensor(stack: Stack) -> None:
    ours, twins = launch(stack), launch(stack, location=TWIN)
    assert sensor_requests(stack, ours)  # the same evaluation starts this location's
    assert sensor_requests(stack, twins, evaluated_for=ours) == []
    assert sensor_requests(stack, twins)  # and its own location's sensor does start it


@on_a_stack
@pytest.mark.parametrize(
    "params",
    [
        {"fromFailure": True},  # re-executes failed runs: the daemon's
        {"reexecutionSteps": ["validation_events"]},
        {"cancel": True},
    ],
    ids=["from-failure", "steps", "canceled"],
)
def test_backfills_the_daemon_must_handle_are_left_to_it(
    stack: Stack, params: dict[str, Any]
) -> None:
    cancel = params.pop("cancel", False)
    backfill_id = launch(stack, **params)
    if cancel:
        answer = graphql(stack.port, CANCEL, {"id": backfill_id})["cancelPartitionBackfill"]
        assert answer["__typename"] == "CancelBackfillSuccess", answer
    assert sensor_requests(stack, backfill_id) == []


@on_a_stack
def test_an_old_backfill_is_left_to_the_daemon(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Older than FRESH_SECONDS, the backfill daemon has looked at it."""
    backfill_id = launch(stack)
    assert sensor_requests(stack, backfill_id)
    monkeypatch.setattr(backfill_start, "FRESH_SECONDS", -1.0)
    assert sensor_requests(stack, backfill_id) == []


@on_a_stack
def test_an_asset_backfill_is_left_to_the_daemon(stack: Stack) -> None:
    backfill_id = launch(stack, None, assetSelection=assets("validation_events"))
    context = SensorEvaluationContext(
        instance_ref=None,
        repository_name=REPOSITORY,
        repository_def=defs.get_repository_def(),
        instance=stack.instance,
    )
    result = backfill_start_sensor.evaluate_tick(context)
    assert not [r for r in result.run_requests or [] if r.tags.get(BACKFILL_TAG) == backfill_id]


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
