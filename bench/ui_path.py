"""Benchmark of the UI path: what a user who launches from the Dagster UI waits for.

Starts the webserver and the daemon as ``make ui`` does (``dagster dev -w ... -h 127.0.0.1``)
on a temporary DAGSTER_HOME (the repo's dagster.yaml plus the launch tuning below) and a
sample deployment, and measures in the same run, side by side with the in-process CLI:

- T1: a backfill of ``daily_export_job`` through GraphQL ``launchPartitionBackfill`` with no
  run config, launch → all runs terminal, vs ``export-assets materialize --last-days N`` of
  the same days (7 days: ≤ 2x; 30 days with ``--month``: ≤ 1.5x);
- T2: one ``proxy_list`` partition launched as the UI's asset page does (the implicit asset
  job, default config), launch → success, vs ``dagster asset materialize`` of the same (≤ 3x);
- T6: GraphQL launch → queued, median of ``--launches`` launches of ``daily_export_job`` vs
  the same of bench/trivial_location.py's one-asset location (≤ 1.25x); beside it, as the
  attribution, its shape-matched location (6 daily assets with 2 check specs each, doing
  nothing) and the events each launch wrote.

Prints a markdown table with PASS/MISS per target and, with ``--write``, replaces its own
section of bench/results/latest.md (the other sections are kept). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from export_assets.defs.exports.daily import DAYS_PER_BACKFILL_RUN

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: e2e/ is beside bench/, not installed
    sys.path.insert(0, str(ROOT))

from e2e.stack import (  # noqa: E402
    BIN,
    HOST,
    LAUNCH_BACKFILL,
    Process,
    StackError,
    base_env,
    free_port,
    graphql,
    http_ok,
    locations_loaded,
    running,
    start,
    started_services,
    wait_for,
)

END = date(2026, 11, 20)  # last day of the sample and of every backfill
LOCATION = "export_assets"
TRIVIAL_LOCATION = "trivial"
SHAPED_LOCATION = "trivial_shaped"  # daily_export_job's shape, trivial assets
REPOSITORY = "__repository__"
JOB = "daily_export_job"
ASSET_JOB = "__ASSET_JOB"  # what the UI's asset page launches
SINGLE_ASSET = "proxy_list"
BACKFILL_SENSOR = "backfill_start_sensor"  # ticks every 5 s: what it costs an idle stack
HOLD_TAG = "bench/hold"  # runs with this tag stay queued (limit 0): T6 measures only launches
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
RUN_TIMEOUT_SECONDS = 1800.0
POSTGRES_INSTANCE = ROOT / "deploy" / "dagster.postgres.yaml"  # its storage block: --storage

TARGET_BACKFILL_WEEK = 2.0
TARGET_BACKFILL_MONTH = 1.5
TARGET_SINGLE_RUN = 3.0
TARGET_LAUNCH_LATENCY = 1.25

# The instance tuning for the launch path (the block proposed for dagster.yaml; see the
# comments there): dequeue every second on threads, submit backfill runs on threads, and let
# launched runs through the pool check (below).
LAUNCH_TUNING: dict[str, Any] = {
    "run_coordinator": {
        "module": "dagster.core.run_coordinator",
        "class": "QueuedRunCoordinator",
        "config": {
            "dequeue_interval_seconds": 1,
            "dequeue_use_threads": True,
            "dequeue_num_workers": 4,
        },
    },
    "backfills": {"use_threads": True, "num_workers": 2, "num_submit_workers": 4},
    "sensors": {"use_threads": True, "num_workers": 2},
    "schedules": {"use_threads": True, "num_workers": 2},
}
# With pool granularity `op`, the queue counts a run that is STARTING (and STARTED for 5 s)
# as holding a slot for each of its root steps in the pool: 6 of s3_writers' 6 for a day of
# daily_export_job, though the in-process executor claims one at a time. Without a buffer
# the next run waits for the previous run worker's start: runs launch one by one.
POOL_TUNING: dict[str, Any] = {"op_granularity_run_buffer": 24}

# Executors to compare through run config (--executor), as if each were the jobs' default.
EXECUTORS: dict[str, dict[str, Any] | None] = {
    "default": None,  # no run config: what a UI user gets
    "in_process": {"execution": {"config": {"in_process": {}}}},
    "multiprocess": {"execution": {"config": {"multiprocess": {}}}},
    "forkserver": {
        "execution": {
            "config": {
                "multiprocess": {
                    "start_method": {
                        "forkserver": {"preload_modules": ["export_assets.definitions"]}
                    }
                }
            }
        }
    },
}

BACKFILL_RUNS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status runs(limit: 100) { runId status } }
  }
}"""
LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}"""
SENSOR = """
query($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) { __typename ... on Sensor { id } }
}"""
STOP_SENSOR = """
mutation($id: String) { stopSensor(id: $id) { __typename } }"""
START_SENSOR = """
mutation($selector: SensorSelector!) { startSensor(sensorSelector: $selector) { __typename } }"""
RUN_STATUS = """
query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"""


class BenchError(RuntimeError):
    """A launch was refused or a run failed: the figures would mean nothing."""


# --- measuring ------------------------------------------------------------------------


@dataclass
class Timed:
    """One contender: what it is and its wall seconds (the fastest of its repeats)."""

    what: str
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)  # CPU seconds of each run, same order

    def add(self, wall: float, cpu: float) -> None:
        self.walls.append(wall)
        self.cpus.append(cpu)

    @property
    def wall(self) -> float:
        return min(self.walls)

    @property
    def cpu(self) -> float:
        """CPU seconds of the fastest run: steadier than wall time on a shared machine."""
        return self.cpus[self.walls.index(self.wall)]


def run_command(command: Sequence[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``command`` and its children (start-up included)."""
    with log.open("ab") as out:
        started = time.perf_counter()
        process = subprocess.Popen(list(command), env=env, cwd=ROOT, stdout=out, stderr=out)  # noqa: S603
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    if code := os.waitstatus_to_exitcode(status):
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise BenchError(f"{' '.join(command)} exited with {code}:\n{tail}")
    return wall, usage.ru_utime + usage.ru_stime


def group_cpu(processes: Sequence[Process]) -> float:
    """CPU seconds used so far by every process of the stack, and by the children each has
    reaped (run workers, step processes): the UI path's CPU is the difference of two reads."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for process in processes:
        for pid in process.group_pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # exited between the listing and the read
                continue
            total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / ticks


def days_ending(end: date, count: int) -> list[str]:
    """The ``count`` partition keys ending on ``end``, oldest first."""
    return [(end - timedelta(days=n)).isoformat() for n in reversed(range(count))]


# --- the stack ------------------------------------------------------------------------


@dataclass
class Stack:
    """A running ``dagster dev`` and the instance folder it uses."""

    port: int
    home: Path
    exports: Path
    processes: list[Process]

    def query(self, text: str, variables: dict[str, Any] | None = None) -> Any:
        """POST one GraphQL document; its ``data`` (errors raise)."""
        return graphql(self.port, text, variables)


def section_marks(storage: str) -> tuple[str, str]:
    """The lines around this harness's section of the results, one section per storage."""
    name = "bench/ui_path.py" if storage == "sqlite" else f"bench/ui_path.py --storage {storage}"
    return f"<!-- {name}: start -->", f"<!-- {name}: end -->"


def instance_yaml(home: Path, storage: str) -> None:
    """The repo's dagster.yaml plus LAUNCH_TUNING and the T6 hold limit, into ``home``; with
    ``storage`` postgres, deploy/dagster.postgres.yaml's storage block (DAGSTER_PG_* set)."""
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text()) or {}
    if storage == "postgres":
        config["storage"] = yaml.safe_load(POSTGRES_INSTANCE.read_text())["storage"]
    for key, value in LAUNCH_TUNING.items():
        config.setdefault(key, value)
    pools = config.setdefault("concurrency", {}).setdefault("pools", {})
    for key, value in POOL_TUNING.items():
        pools.setdefault(key, value)
    runs = config["concurrency"].setdefault("runs", {})
    runs.setdefault("tag_concurrency_limits", []).append({"key": HOLD_TAG, "limit": 0})
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def workspace_yaml(base: Path) -> Path:
    """The repo's workspace.yaml (absolute paths) plus the trivial locations."""
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    for entry in workspace["load_from"]:
        for spec in entry.values():
            if "working_directory" in spec:
                spec["working_directory"] = str((ROOT / spec["working_directory"]).resolve())
    workspace["load_from"] += [
        {
            "python_file": {
                "relative_path": str(ROOT / "bench" / "trivial_location.py"),
                "attribute": attribute,
                "location_name": name,
                "working_directory": str(ROOT),
            }
        }
        for name, attribute in ((TRIVIAL_LOCATION, "defs"), (SHAPED_LOCATION, "shaped_defs"))
    ]
    path = base / "workspace.yaml"
    path.write_text(yaml.safe_dump(workspace, sort_keys=False))
    return path


# --- T1: backfills ----------------------------------------------------------------------


@dataclass
class Backfill:
    """One backfill through the UI path, and where its time went."""

    wall: float
    cpu: float  # the whole stack's CPU seconds during the backfill
    pickup: float  # launch → first run created (backfill_start_sensor, or the backfill daemon)
    queued: list[float]  # per run: created → launched (RUN_STARTING)
    worker_start: list[float]  # per run: launched → run worker executing (RUN_START)
    body: list[float]  # per run: RUN_START → run end (steps, the work)


def run_phases(home: Path, run_ids: Sequence[str]) -> tuple[list[float], ...]:
    """Per run: queued, worker start and body seconds, read from the instance's event log."""
    from dagster import DagsterEventType, DagsterInstance

    marks = {
        DagsterEventType.RUN_STARTING: "starting",
        DagsterEventType.RUN_START: "start",
        DagsterEventType.RUN_SUCCESS: "end",
        DagsterEventType.RUN_FAILURE: "end",
    }
    queued, worker, body = [], [], []
    with DagsterInstance.from_config(str(home)) as instance:
        for run_id in run_ids:
            record = instance.get_run_record_by_id(run_id)
            assert record is not None, run_id
            times: dict[str, float] = {}
            for entry in instance.all_logs(run_id, of_type=set(marks)):
                assert entry.dagster_event is not None
                times[marks[entry.dagster_event.event_type]] = entry.timestamp
            created = record.create_timestamp.timestamp()
            queued.append(times["starting"] - created)
            worker.append(times["start"] - times["starting"])
            body.append(times["end"] - times["start"])
    return queued, worker, body


def ui_backfill(
    stack: Stack, partitions: Sequence[str], run_config: dict[str, Any] | None
) -> Backfill:
    """launchPartitionBackfill of ``partitions``, waited for until every run is terminal."""
    params: dict[str, Any] = {
        "selector": {
            "partitionSetName": f"{JOB}_partition_set",
            "repositorySelector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
            },
        },
        "partitionNames": list(partitions),
        "tags": [{"key": "export/requested_by", "value": "bench-ui-path"}],
    }
    if run_config is not None:
        params["runConfigData"] = run_config
    cpu_before = group_cpu(stack.processes)
    started = time.perf_counter()
    result = stack.query(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise BenchError(f"launchPartitionBackfill refused: {result}")
    backfill_id = result["backfillId"]
    first_run: list[float] = []

    def finished() -> list[dict[str, Any]] | None:
        backfill = stack.query(BACKFILL_RUNS, {"id": backfill_id})["partitionBackfillOrError"]
        runs: list[dict[str, Any]] = backfill["runs"]
        if runs and not first_run:
            first_run.append(time.perf_counter() - started)
        # A backfill run covers up to DAYS_PER_BACKFILL_RUN days (the jobs' backfill policy).
        expected = -(-len(partitions) // DAYS_PER_BACKFILL_RUN)
        if len(runs) == expected and all(r["status"] in TERMINAL for r in runs):
            return runs
        return None

    runs = poll(f"backfill {backfill_id}", finished, stack)
    wall = time.perf_counter() - started
    cpu = group_cpu(stack.processes) - cpu_before
    failed = [r["runId"] for r in runs if r["status"] != "SUCCESS"]
    if failed:
        raise BenchError(
            f"backfill {backfill_id}: runs {failed} did not succeed (see {stack.home})"
        )
    queued, worker, body = run_phases(stack.home, [r["runId"] for r in runs])
    return Backfill(wall, cpu, first_run[0], queued, worker, body)


def poll(what: str, probe: Callable[[], Any], stack: Stack) -> Any:
    """``wait_for`` at a fine grain: the figures are seconds, not minutes."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        if not all(p.alive() for p in stack.processes):
            return wait_for(what, probe, 0, stack.processes)  # raises naming the dead process
        time.sleep(0.25)
    return wait_for(what, probe, 0, stack.processes)


# --- T2 and T6: single launches -----------------------------------------------------------


def launch(
    stack: Stack,
    location: str,
    job: str,
    tags: dict[str, str],
    run_config: dict[str, Any] | None = None,
    assets: Sequence[str] = (),
) -> str:
    """launchPipelineExecution as the UI sends it; the run id (stored QUEUED on return)."""
    selector: dict[str, Any] = {
        "repositoryLocationName": location,
        "repositoryName": REPOSITORY,
        "pipelineName": job,
    }
    if assets:
        selector["assetSelection"] = [{"path": [key]} for key in assets]
    params = {
        "selector": selector,
        "runConfigData": run_config or {},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    result = stack.query(LAUNCH_RUN, {"params": params})["launchPipelineExecution"]
    if result["__typename"] != "LaunchRunSuccess":
        raise BenchError(f"launch of {job} in {location} refused: {result}")
    run_id: str = result["run"]["runId"]
    return run_id


def ui_single_run(
    stack: Stack, partition: str, run_config: dict[str, Any] | None
) -> tuple[float, float]:
    """One ``proxy_list`` partition from the asset page: launch → success, wall and CPU s."""
    cpu_before = group_cpu(stack.processes)
    started = time.perf_counter()
    run_id = launch(
        stack,
        LOCATION,
        ASSET_JOB,
        {"dagster/partition": partition, "export/requested_by": "bench-ui-path"},
        run_config,
        assets=[SINGLE_ASSET],
    )

    def status() -> str | None:
        value: str = stack.query(RUN_STATUS, {"id": run_id})["runOrError"]["status"]
        return value if value in TERMINAL else None

    final = poll(f"run {run_id}", status, stack)
    wall = time.perf_counter() - started
    cpu = group_cpu(stack.processes) - cpu_before
    if final != "SUCCESS":
        raise BenchError(f"{SINGLE_ASSET} run {run_id} ended {final} (see {stack.home})")
    return wall, cpu


@dataclass
class Launches:
    """T6: milliseconds launch → queued of one job, and the events one launch wrote."""

    what: str
    location: str
    job: str
    tags: dict[str, str]
    ms: list[float] = field(default_factory=list)
    events: int = 0  # the run's event log right after launch (planned events, enqueued)

    @property
    def median(self) -> float:
        return statistics.median(self.ms)


def launch_latencies(stack: Stack, launches: int) -> list[Launches]:
    """Launch → queued of daily_export_job, the trivial job and the shaped job, interleaved.

    The runs carry HOLD_TAG, whose limit is 0: they stay queued and nothing executes. The
    first launch of each warms the webserver's caches and is not counted.
    """
    day = {"dagster/partition": END.isoformat()}
    jobs = [
        Launches(f"`{JOB}`", LOCATION, JOB, day),
        Launches("trivial one-asset job (the anchor)", TRIVIAL_LOCATION, "trivial_job", {}),
        Launches(
            "trivial job of daily_export_job's shape (6 daily assets × 2 check specs)",
            SHAPED_LOCATION,
            "shaped_job",
            day,
        ),
    ]
    run_ids: dict[str, str] = {}
    for n in range(launches + 1):
        for job in jobs:
            started = time.perf_counter()
            run_ids[job.job] = launch(stack, job.location, job.job, {**job.tags, HOLD_TAG: "1"})
            if n:
                job.ms.append((time.perf_counter() - started) * 1000)
    from dagster import DagsterInstance

    # Dagster writes an event per asset and per check of the run when it creates the run
    # (planned events), each its own SQLite transactions: this count is what a launch costs.
    with DagsterInstance.from_config(str(stack.home)) as instance:
        for job in jobs:
            job.events = len(instance.all_logs(run_ids[job.job]))
    return jobs


def idle_cpu(stack: Stack, seconds: float) -> tuple[float, float]:
    """CPU seconds a minute of the idle stack with BACKFILL_SENSOR on, then off (it is
    switched on again after)."""
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": REPOSITORY,
        "sensorName": BACKFILL_SENSOR,
    }

    def per_minute() -> float:
        before = group_cpu(stack.processes)
        time.sleep(seconds)
        return (group_cpu(stack.processes) - before) * 60 / seconds

    on = per_minute()
    found = stack.query(SENSOR, {"selector": selector})["sensorOrError"]
    if found["__typename"] != "Sensor":
        raise BenchError(f"{BACKFILL_SENSOR} not found: {found}")
    stack.query(STOP_SENSOR, {"id": found["id"]})
    time.sleep(6)  # a tick in flight ends
    off = per_minute()
    stack.query(START_SENSOR, {"selector": selector})
    return on, off


# --- the run --------------------------------------------------------------------------


@dataclass
class Results:
    """Everything measured, for the tables."""

    backfills: dict[int, tuple[Timed, dict[str, Timed]]] = field(default_factory=dict)
    phases: dict[tuple[int, str], Backfill] = field(default_factory=dict)
    single: tuple[Timed, dict[str, Timed]] | None = None
    latencies: list[Launches] | None = None
    idle: tuple[float, float] | None = None  # CPU s a minute, the sensor on / off
    complete: bool = False  # every contender measured


def measure_all(args: argparse.Namespace, base: Path) -> Results:
    """Start the stack, run every contender ``args.repeat`` times, interleaved."""
    backfill_days = [*args.days, *([30] if args.month else [])] if args.backfill else []
    database = sample(base, max(backfill_days, default=1) + 1)
    results = Results()
    home = base / "dagster_home"
    home.mkdir()
    instance_yaml(home, args.storage)
    cli_home = base / "cli_home"  # the CLI's own instance, same settings
    cli_home.mkdir()
    instance_yaml(cli_home, args.storage)
    logs = base / "logs"
    env = base_env(home, database, base / "ui-exports")
    cli_env = base_env(cli_home, database, base / "cli-exports")
    port = free_port()
    workspace = workspace_yaml(base)
    try:
        with ExitStack() as storage:
            if args.storage == "postgres":
                # One throwaway PostgreSQL for both instances; this process reads it too.
                state = base / "services"
                state.mkdir()
                database_env = storage.enter_context(started_services(state))
                pg = {k: v for k, v in database_env.items() if k.startswith("DAGSTER_PG_")}
                os.environ.update(pg)
                env.update(pg)
                cli_env.update(pg)
            measure_on_stack(args, results, backfill_days, env, cli_env, port, workspace, logs)
    except StackError as error:
        # Stopping is checked strictly (e2e/stack.py); a straggler seconds late under load
        # (a zombie not yet reaped) must not throw away the figures.
        if not results.complete:
            raise
        say(f"WARNING: {error}")
    return results


def measure_on_stack(
    args: argparse.Namespace,
    results: Results,
    backfill_days: Sequence[int],
    env: dict[str, str],
    cli_env: dict[str, str],
    port: int,
    workspace: Path,
    logs: Path,
) -> None:
    """Start ``dagster dev``, measure every contender into ``results``, stop it."""
    home = Path(env["DAGSTER_HOME"])
    with running([]) as processes:
        dev = start(
            "dagster-dev",
            [str(BIN / "dagster"), "dev", "-w", str(workspace), "-h", HOST, "-p", str(port)],
            env,
            logs,
        )
        processes.append(dev)
        wait_for("the webserver", lambda: http_ok(f"http://{HOST}:{port}/server_info"), 300, [dev])
        stack = Stack(port, home, Path(env["EXPORT_DESTINATION"]), processes)
        names = (LOCATION, TRIVIAL_LOCATION, SHAPED_LOCATION)
        wait_for("the code locations", lambda: locations_loaded(port, names), 300, [dev])
        say(f"dagster dev on {HOST}:{port}, DAGSTER_HOME={home}")
        if args.idle:
            time.sleep(args.idle)  # start-up settles (code servers, first ticks)
            results.idle = idle_cpu(stack, args.idle)
            say(
                f"idle CPU a minute: {BACKFILL_SENSOR} on {results.idle[0]:.1f} s, off "
                f"{results.idle[1]:.1f} s"
            )
        for days in backfill_days:
            partitions = days_ending(END, days)
            cli = Timed(f"`export-assets materialize --last-days {days}` (in process)")
            ui = {
                name: Timed(f"GraphQL `launchPartitionBackfill`, {label(name)}")
                for name in args.executor
            }
            for _ in range(args.repeat):
                command = [
                    str(BIN / "export-assets"),
                    "materialize",
                    "--last-days",
                    str(days),
                    "--end-date",
                    END.isoformat(),
                ]
                cli.add(*run_command(command, cli_env, logs / "cli.log"))
                say(f"T1 {days} days, CLI: {cli.walls[-1]:.1f} s, {cli.cpus[-1]:.1f} s CPU")
                for name in args.executor:
                    done = ui_backfill(stack, partitions, EXECUTORS[name])
                    ui[name].add(done.wall, done.cpu)
                    results.phases[(days, name)] = done
                    say(
                        f"T1 {days} days, UI {name}: {done.wall:.1f} s, {done.cpu:.1f} s CPU"
                        f" (pickup {done.pickup:.1f} s;"
                        f" per run median: queued {statistics.median(done.queued):.1f} s, worker"
                        f" start {statistics.median(done.worker_start):.1f} s, body"
                        f" {statistics.median(done.body):.1f} s)"
                    )
            results.backfills[days] = (cli, ui)
        if args.single:
            cli = Timed(f"`dagster asset materialize --select {SINGLE_ASSET}`, in process")
            ui = {
                name: Timed(f"GraphQL `launchPipelineExecution` ({ASSET_JOB}), {label(name)}")
                for name in args.executor
            }
            command = [
                str(BIN / "dagster"),
                "asset",
                "materialize",
                "-m",
                "export_assets.definitions",
                "--select",
                SINGLE_ASSET,
                "--partition",
                END.isoformat(),
                # In process whatever the jobs' default executor is: this is the baseline.
                "--config-json",
                json.dumps(EXECUTORS["in_process"]),
            ]
            for _ in range(args.repeat):
                cli.add(*run_command(command, cli_env, logs / "cli.log"))
                say(f"T2 CLI: {cli.walls[-1]:.1f} s, {cli.cpus[-1]:.1f} s CPU")
                for name in args.executor:
                    ui[name].add(*ui_single_run(stack, END.isoformat(), EXECUTORS[name]))
                    say(f"T2 UI {name}: {ui[name].walls[-1]:.1f} s, {ui[name].cpus[-1]:.1f} s CPU")
            results.single = (cli, ui)
        if args.launches:
            results.latencies = launch_latencies(stack, args.launches)
            say(
                "T6 launch → queued median: "
                + ", ".join(
                    f"{j.job} {j.median:.0f} ms ({j.events} events)" for j in results.latencies
                )
            )
        results.complete = True


def sample(base: Path, days: int) -> Path:
    """The `make run` sample (300 proxies, 2,000 checks a day) for ``days`` days to END."""
    out = base / "proxywhirl"
    subprocess.run(  # noqa: S603
        [
            str(BIN / "export-assets"),
            "sample-data",
            "--out",
            str(out),
            "--days",
            str(days),
            "--end-date",
            END.isoformat(),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    return out / "proxies.db"


def label(executor: str) -> str:
    if executor == "default":
        return "no run config (the jobs' default executor)"
    return f"run config `execution: {executor}`"


def say(text: str) -> None:
    print(f"  {datetime.now(UTC):%H:%M:%S} {text}", flush=True)


# --- report ---------------------------------------------------------------------------


def report(args: argparse.Namespace, results: Results, started: datetime) -> str:
    """The section: contenders with figures, then each target PASS/MISS."""
    start, end = section_marks(args.storage)
    storage = (
        ""
        if args.storage == "sqlite"
        else f" with {POSTGRES_INSTANCE.relative_to(ROOT)}'s storage (PostgreSQL)"
    )
    title = "UI path" if args.storage == "sqlite" else f"UI path on {args.storage}"
    lines = [
        start,
        f"## {title} (`bench/ui_path.py`), {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {os.cpu_count()} cores, Linux {platform.release()}, Python "
        f"{platform.python_version()}; load average at start {os.getloadavg()[0]:.1f}. "
        f"`dagster dev` (webserver + daemon) on a temporary DAGSTER_HOME (the repo's "
        f"dagster.yaml{storage} plus the launch tuning in bench/ui_path.py), the `make run` sample "
        f"(300 proxies, 2,000 checks a day) ending {END}. Wall seconds, fastest of "
        f"{args.repeat}; contenders interleaved in one run.",
        "",
    ]
    if results.backfills or results.single:
        lines += [
            "| contender | wall s | × in process | CPU s | CPU × in process | wall s of each run |",
            "|---|---:|---:|---:|---:|---|",
        ]
    targets: list[tuple[str, bool, str]] = []
    for days, (cli, ui) in results.backfills.items():
        lines.append(row(f"{days} days: {cli.what}", cli, cli))
        lines += [row(f"{days} days: {timed.what}", timed, cli) for timed in ui.values()]
        bound = TARGET_BACKFILL_WEEK if days <= 7 else TARGET_BACKFILL_MONTH
        if "default" in ui:
            ratio = ui["default"].wall / cli.wall
            targets.append(
                (
                    f"T1 UI-path backfill, {days} days, no run config ≤ {bound}× CLI",
                    ratio <= bound,
                    f"{ui['default'].wall:.1f} s vs {cli.wall:.1f} s = {ratio:.2f}×",
                )
            )
    if results.single:
        cli, ui = results.single
        lines.append(row(cli.what, cli, cli))
        lines += [row(timed.what, timed, cli) for timed in ui.values()]
        if "default" in ui:
            ratio = ui["default"].wall / cli.wall
            targets.append(
                (
                    f"T2 one-asset UI run ({SINGLE_ASSET}), launch → success ≤ "
                    f"{TARGET_SINGLE_RUN}× in process",
                    ratio <= TARGET_SINGLE_RUN,
                    f"{ui['default'].wall:.1f} s vs {cli.wall:.1f} s = {ratio:.2f}×",
                )
            )
    if results.backfills or results.single:
        lines.append("")
    if results.phases:
        lines += [
            "Where a UI backfill's time goes (medians per run, seconds): pickup is launch → "
            "first run created (`backfill_start_sensor`, on the sensor daemon's 5 s loop; "
            "Dagster's backfill daemon looks every 30 s); "
            "queued is created → launched; worker start is launched → the run worker executing "
            "(a new process importing the code location); body is the run's steps.",
            "",
            "| backfill | pickup | queued | worker start | body | Σ worker start + body / day |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for (days, name), b in results.phases.items():
            per_day = (sum(b.worker_start) + sum(b.body)) / days
            lines.append(
                f"| {days} days, {name} | {b.pickup:.1f} | {statistics.median(b.queued):.1f} | "
                f"{statistics.median(b.worker_start):.1f} | {statistics.median(b.body):.1f} | "
                f"{per_day:.1f} |"
            )
        lines.append("")
    if results.idle:
        on, off = results.idle
        lines += [
            f"Idle stack (no run; {args.idle:.0f} s each way, after {args.idle:.0f} s of "
            f"start-up): {on:.1f} s of CPU a minute with `{BACKFILL_SENSOR}` on, {off:.1f} s "
            f"with it off: its tick every 5 s costs {on - off:.1f} s a minute.",
            "",
        ]
    if results.latencies:
        lines += launch_table(results.latencies)
        ours, trivial = results.latencies[0].ms, results.latencies[1].ms
        ratio = statistics.median(ours) / statistics.median(trivial)
        targets.append(
            (
                f"T6 GraphQL launch → queued, median of {len(ours)}, ≤ {TARGET_LAUNCH_LATENCY}× "
                "a trivial location",
                ratio <= TARGET_LAUNCH_LATENCY,
                f"{statistics.median(ours):.0f} ms (min {min(ours):.0f}, max {max(ours):.0f}) vs "
                f"{statistics.median(trivial):.0f} ms (min {min(trivial):.0f}, max "
                f"{max(trivial):.0f}) = {ratio:.2f}×",
            )
        )
    lines += ["| target | result | figures |", "|---|---|---|"]
    for what, passed, figures in targets:
        lines.append(f"| {what} | {'PASS' if passed else 'MISS'} | {figures} |")
    lines.append(end)
    return "\n".join(lines) + "\n"


def launch_table(jobs: Sequence[Launches]) -> list[str]:
    """T6's attribution: each job's launch → queued and the events its launch wrote."""
    ours, trivial, shaped = jobs
    lines = [
        "Launch → queued (T6), interleaved on the same webserver: the run's events are what "
        "Dagster writes when it creates the run (a planned event per asset and per check, in "
        "transactions of their own), so the shape-matched trivial job shows what "
        "the job's size costs whatever its definitions are.",
        "",
        "| launched job | median ms | min ms | max ms | events at launch | × trivial | × shaped |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for job in jobs:
        lines.append(
            f"| {job.what} | {job.median:.0f} | {min(job.ms):.0f} | {max(job.ms):.0f} | "
            f"{job.events} | {job.median / trivial.median:.2f} | "
            f"{job.median / shaped.median:.2f} |"
        )
    extra = ours.events - trivial.events
    if extra > 0:
        lines += [
            "",
            f"Each event more costs ≈ {(ours.median - trivial.median) / extra:.0f} ms "
            f"(({ours.median:.0f} − {trivial.median:.0f}) / {extra}); "
            f"{JOB} launches {ours.median / shaped.median:.2f}× the trivial job of its shape.",
        ]
    return [*lines, ""]


def row(what: str, timed: Timed, baseline: Timed) -> str:
    """One contender's line, its ratios to ``baseline``."""
    walls = ", ".join(f"{w:.1f}" for w in timed.walls)
    return (
        f"| {what} | {timed.wall:.1f} | {timed.wall / baseline.wall:.2f} | {timed.cpu:.1f} | "
        f"{timed.cpu / baseline.cpu:.2f} | {walls} |"
    )


def write_section(path: Path, section: str, storage: str) -> None:
    """Replace this harness's section of ``path`` for ``storage`` (or append it), keeping the
    others."""
    start, end = section_marks(storage)
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--days", type=int, nargs="+", default=[7], help="days of each T1 backfill (e.g. 3 7)"
    )
    parser.add_argument("--month", action="store_true", help="also a 30-day T1 backfill")
    parser.add_argument("--no-backfill", dest="backfill", action="store_false", help="skip T1")
    parser.add_argument("--no-single", dest="single", action="store_false", help="skip T2")
    parser.add_argument("--launches", type=int, default=20, help="T6 launches (0: skip T6)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each contender")
    parser.add_argument(
        "--idle",
        type=float,
        default=0,
        help=f"seconds of idle-stack CPU with {BACKFILL_SENSOR} on and off (0: skip)",
    )
    parser.add_argument(
        "--executor",
        nargs="+",
        default=["default"],
        choices=sorted(EXECUTORS),
        help="UI contenders: 'default' sends no run config (the targets); the others send "
        "that executor as run config, to compare candidates for the jobs' default",
    )
    parser.add_argument(
        "--storage",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="the instance's storage: the embedded default's SQLite (the targets), or "
        "PostgreSQL as deploy/dagster.postgres.yaml configures it, on a throwaway server "
        "started by deploy/services.sh (its own section of --results)",
    )
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "latest.md")
    parser.add_argument("--write", action="store_true", help="replace the section in --results")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if min(args.days) < 1 or args.repeat < 1:
        parser.error("--days and --repeat must be at least 1")

    # A SIGTERM unwinds like an error, so the stack's processes are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = datetime.now(UTC)
    base = Path(tempfile.mkdtemp(prefix="ui-path-"))
    try:
        results = measure_all(args, base)
    except BaseException:
        print(f"kept {base} (logs/, dagster_home/) to see what failed", file=sys.stderr)
        raise
    if args.keep:
        print(f"kept {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    section = report(args, results, started)
    print()
    print(section)
    if args.write:
        write_section(args.results, section, args.storage)
        print(f"written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
