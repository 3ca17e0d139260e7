"""Every run ends in a terminal state and frees its pool slots, however it dies (issue 13.2).

Real processes and a real SQLite instance: export runs are killed with SIGKILL while they hold
their ``s3_writers`` slot (and one while it waits for one), more times than the pool has
slots; then one more ``export-assets materialize`` runs without manual steps.
"""

# No "from __future__ import annotations": Dagster reads the test assets' context annotations.

import contextlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
    asset,
    materialize,
)

from export_assets.defs.exports.daily import EXPORT_WRITERS_POOL, DayContext, daily_export
from export_assets.defs.operations.run_sweep import (
    RUN_PROCESS_TAG,
    RunProcess,
    current_run_process,
    process_is_alive,
    run_process_of,
    sweep_dead_runs,
)
from export_assets.defs.partitions import daily_partitions
from export_assets.defs.resources.io_manager import ExportIOManager
from export_assets.defs.resources.store import ExportStore
from export_assets.lib.exports.export import DocumentExport, DocumentOptions
from export_assets.lib.sample import SampleDeployment
from export_assets_tests.conftest import SAMPLE_END

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
PARTITION = SAMPLE_END.isoformat()
POOL_LIMIT = 2  # the repo's dagster.yaml with a smaller pool: the same leak, fewer processes
WAIT_SECONDS = 90  # process start-up (imports) on a busy shared machine; normally ~5 s

# A stand-in for an export that is mid-write: a step in the exports' pool that records its
# run's process as every export step does (export_assets.defs.exports.daily), then holds its slot
# until it is killed. Imports only Dagster and the sweep, so it starts fast.
SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    from dagster import AssetExecutionContext, DagsterInstance, DailyPartitionsDefinition
    from dagster import asset, materialize
    from export_assets.defs.operations.run_sweep import record_run_process

    @asset(pool=sys.argv[2], partitions_def=DailyPartitionsDefinition(start_date=sys.argv[1]))
    def slow_write(context: AssetExecutionContext) -> None:
        record_run_process(context)
        time.sleep(3600)

    with DagsterInstance.get() as instance:
        materialize([slow_write], instance=instance, partition_key=sys.argv[1])
    """
)


@daily_export(group_name="dead_run_tests")
def quick_export(context: DayContext) -> DocumentExport:
    """A one-line export: its step records its run's process, like every export."""
    context.log.info("exported")
    return DocumentExport(document={"ok": True}, options=DocumentOptions(), source={})


@asset(partitions_def=daily_partitions, group_name="dead_run_tests")
def contextless_export() -> None:
    """Not an export and no context, so nothing recorded: judged by its RUN_START event."""


def writer(home: Path) -> dict[str, ExportIOManager]:
    """The IO manager of the exports, writing beside DAGSTER_HOME."""
    return {"io_manager": ExportIOManager(store=ExportStore(destination=str(home.parent / "out")))}


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A persistent DAGSTER_HOME with the repo's dagster.yaml, pool limit lowered."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = (ROOT / "dagster.yaml").read_text()
    assert "default_limit: 6" in config
    (home / "dagster.yaml").write_text(
        config.replace("default_limit: 6", f"default_limit: {POOL_LIMIT}")
    )
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _pool_state(instance: DagsterInstance) -> str:
    """What the pool holds, for a failure message: claimed slots and every pending step."""
    info = instance.event_log_storage.get_concurrency_info(EXPORT_WRITERS_POOL)
    claimed = [(slot.run_id[:8], slot.step_key) for slot in info.claimed_slots]
    pending = [
        (step.run_id[:8], step.step_key, step.assigned_timestamp) for step in info.pending_steps
    ]
    return f"slot count {info.slot_count}, claimed {claimed}, pending {pending}"


def _pool(instance: DagsterInstance) -> tuple[list[str], list[str]]:
    """(runs holding an s3_writers slot, runs waiting for one)."""
    info = instance.event_log_storage.get_concurrency_info(EXPORT_WRITERS_POOL)
    holding = [slot.run_id for slot in info.claimed_slots]
    waiting = [step.run_id for step in info.pending_steps if step.assigned_timestamp is None]
    return holding, waiting


def _pool_counts_are(instance: DagsterInstance, expected: list[int]) -> Callable[[], bool]:
    """Whether the pool has ``expected`` = [runs holding a slot, runs waiting for one]."""
    return lambda: [len(part) for part in _pool(instance)] == expected


def _wait_for(
    condition: Callable[[], bool],
    what: str,
    processes: list[subprocess.Popen[bytes]],
    state: Callable[[], object] = str,
) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        for process in processes:
            if process.poll() is not None:
                _, err = process.communicate()
                pytest.fail(f"writer {process.pid} exited early:\n{err.decode()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"waited {WAIT_SECONDS} s for {what}; last seen: {state()}")
        time.sleep(0.2)


@pytest.fixture
def slow_writers(tmp_path: Path) -> Iterator[Callable[[int], list[subprocess.Popen[bytes]]]]:
    """Starts N writer processes; any still alive at the end are killed."""
    script = tmp_path / "slow_writer.py"
    script.write_text(SLOW_WRITER)
    started: list[subprocess.Popen[bytes]] = []

    def start(count: int) -> list[subprocess.Popen[bytes]]:
        batch = [
            subprocess.Popen(
                [sys.executable, str(script), PARTITION, EXPORT_WRITERS_POOL],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for _ in range(count)
        ]
        started.extend(batch)
        return batch

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _kill_writers_mid_write(
    start_writers: Callable[[int], list[subprocess.Popen[bytes]]],
) -> tuple[list[str], list[str]]:
    """POOL_LIMIT + 1 runs: POOL_LIMIT hold the slots mid-write, one waits; all get SIGKILL.

    Returns (the runs that held a slot, the run that waited), as the leak left them.
    """
    # One writer at a time, each once the previous holds its slot. Dagster's SQLite storage
    # claims a slot by reading a free row and then updating it (SQLite ignores the read's
    # FOR UPDATE): two steps claiming in the same instant may both update the same row, and
    # then both run while the pool shows one slot taken and one free. Started together, the
    # writers would show that race, not the leak this test is about.
    writers: list[subprocess.Popen[bytes]] = []
    # The instance's storage is created before any writer opens it: two processes creating
    # it at once fail one of them ("table alembic_version already exists").
    with DagsterInstance.get() as instance:
        # Each writer in turn: one more holding a slot, until the last one waits.
        steps = [[count, 0] for count in range(1, POOL_LIMIT + 1)] + [[POOL_LIMIT, 1]]
        for expected in steps:
            writers += start_writers(1)
            _wait_for(
                _pool_counts_are(instance, expected),
                f"{expected[0]} writer(s) holding a slot and {expected[1]} waiting",
                writers,
                state=lambda: _pool_state(instance),
            )
        holding, waiting = _pool(instance)

        # Live runs are never touched, whatever the sweep finds.
        assert sweep_dead_runs(instance).summary() == "no dead runs, no leaked pool slots"
        assert _pool(instance) == (holding, waiting)

        for process in writers:
            process.send_signal(signal.SIGKILL)
            process.communicate()
        started = instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED]))
        # The leak as observed: killed runs stay STARTED and keep the pool full.
        assert {run.run_id for run in started} == {*holding, *waiting}
        assert _pool(instance) == (holding, waiting)
        # The runs holding a slot recorded their process at the step's start.
        for run in started:
            if run.run_id in holding:
                recorded = RunProcess.from_tag(run.tags[RUN_PROCESS_TAG], run.run_id)
                assert recorded is not None
                assert recorded.pid in {process.pid for process in writers}
    return holding, waiting


def _assert_all_ended_and_freed(instance: DagsterInstance, killed: list[str]) -> None:
    assert instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED])) == []
    assert _pool(instance) == ([], [])
    failed = instance.get_runs(filters=RunsFilter(run_ids=killed))
    assert {run.status for run in failed} == {DagsterRunStatus.FAILURE}
    # The failure says why, in the run's own event log (what the UI shows).
    reasons = [
        event.message or ""
        for run in failed
        for event in instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE)
    ]
    assert len(reasons) == len(killed)
    assert all("is gone (killed or crashed)" in reason for reason in reasons), reasons


@pytest.mark.slow  # three export processes killed with -9 and a fourth run: ~20 s, load-bound
def test_killed_runs_are_failed_and_free_the_pool_for_the_next_export(
    dagster_home: Path, slow_writers: Callable[[int], list[subprocess.Popen[bytes]]]
) -> None:
    holding, waiting = _kill_writers_mid_write(slow_writers)

    with DagsterInstance.get() as instance:
        report = sweep_dead_runs(instance)
        assert sorted(report.failed) == sorted([*holding, *waiting])
        assert sorted(report.freed) == sorted([*holding, *waiting])
        _assert_all_ended_and_freed(instance, [*holding, *waiting])
        # The next export claims a slot of the pool and succeeds.
        result = materialize(
            [quick_export],
            instance=instance,
            partition_key=PARTITION,
            resources=writer(dagster_home),
        )
        assert result.success
        assert _pool(instance) == ([], [])
        # A second sweep finds nothing left to do.
        assert sweep_dead_runs(instance).summary() == "no dead runs, no leaked pool slots"


@pytest.mark.slow
def test_after_killed_runs_the_next_cli_export_runs_without_manual_steps(
    dagster_home: Path,
    tmp_path: Path,
    sample_deployment: SampleDeployment,
    slow_writers: Callable[[int], list[subprocess.Popen[bytes]]],
) -> None:
    holding, waiting = _kill_writers_mid_write(slow_writers)

    exports = tmp_path / "exports"
    env = {
        **os.environ,
        "PROXYWHIRL_DB": str(sample_deployment.database),
        "EXPORT_DESTINATION": str(exports),
    }
    result = subprocess.run(
        [
            str(BIN / "export-assets"),
            "materialize",
            "--job",
            "backup_job",
            "--last-days",
            "1",
            "--end-date",
            PARTITION,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"dead-run sweep: marked {POOL_LIMIT + 1} dead run(s) failed" in result.stderr
    # The backup template's copies, under its own folder.
    assert (exports / "backup" / "proxy_list" / f"dt={PARTITION}" / "_manifest.json").is_file()
    assert (exports / "backup" / "pool_config" / f"dt={PARTITION}" / "_manifest.json").is_file()

    with DagsterInstance.get() as instance:
        _assert_all_ended_and_freed(instance, [*holding, *waiting])
        backup = instance.get_runs(filters=RunsFilter(job_name="backup_job"))
        assert [run.status for run in backup] == [DagsterRunStatus.SUCCESS]
        # The CLI's own run carries its process, recorded when the run was created.
        recorded = RunProcess.from_tag(backup[0].tags[RUN_PROCESS_TAG], backup[0].run_id)
        assert recorded is not None
        assert not process_is_alive(recorded)  # the CLI has exited


def test_a_reused_pid_is_not_mistaken_for_the_run_process() -> None:
    me = current_run_process("run-1")
    assert me.start_ticks is not None, "this test needs /proc (Linux)"
    assert process_is_alive(me)
    # Same pid, another start time: the pid was reused by an unrelated process.
    assert not process_is_alive(RunProcess("run-1", me.host, me.pid, me.start_ticks + 1))
    # Known only from an event written before this process started: reused too.
    assert not process_is_alive(RunProcess("run-1", me.host, me.pid, seen_at=1_000_000_000.0))
    assert process_is_alive(RunProcess("run-1", me.host, me.pid, seen_at=time.time()))
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert not process_is_alive(RunProcess("run-1", me.host, gone.pid, seen_at=time.time()))


def test_a_run_process_tag_from_another_run_or_malformed_is_ignored_with_a_warning(
    dagster_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copied = current_run_process("parent-run").tag_value()
    assert RunProcess.from_tag(copied, "parent-run") is not None
    assert RunProcess.from_tag(copied, "re-executed-run") is None
    assert RunProcess.from_tag("pid=abc", "run") is None

    with DagsterInstance.get() as instance:
        result = materialize(
            [contextless_export],
            instance=instance,
            partition_key=PARTITION,
            tags={RUN_PROCESS_TAG: "pid=abc"},
        )
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        with caplog.at_level(logging.WARNING, logger="export_assets.defs.operations.run_sweep"):
            judged = run_process_of(instance, run)
        # Judged by the process that wrote RUN_START instead: this one.
        assert judged is not None
        assert judged.pid == os.getpid()
        assert f"tag {RUN_PROCESS_TAG}='pid=abc' is not 'host=H pid=N start=T" in caplog.text
        assert run.run_id in caplog.text
        # Nothing changed: the run stays as it ended, its tag as it was.
        after = instance.get_run_by_id(result.run_id)
        assert after is not None
        assert after.status == DagsterRunStatus.SUCCESS
        assert after.tags[RUN_PROCESS_TAG] == "pid=abc"


def test_an_export_step_records_the_process_executing_its_run(dagster_home: Path) -> None:
    with DagsterInstance.get() as instance:
        result = materialize(
            [quick_export],
            instance=instance,
            partition_key=PARTITION,
            resources=writer(dagster_home),
        )
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        recorded = RunProcess.from_tag(run.tags[RUN_PROCESS_TAG], run.run_id)
        # In-process execution: the run's process is this one (pid and start time).
        assert recorded == current_run_process(run.run_id)


# An export through the real decorator (export_assets.defs.exports.daily) that is mid-write until
# it is stopped.
STOPPABLE_EXPORT = textwrap.dedent(
    """
    import sys, time
    from dagster import DagsterInstance, materialize
    from export_assets.defs.exports.daily import DayContext, daily_export
    from export_assets.defs.resources.io_manager import ExportIOManager
    from export_assets.defs.resources.store import ExportStore

    @daily_export(group_name="dead_run_tests")
    def slow_export(context: DayContext) -> None:
        time.sleep(3600)

    with DagsterInstance.get() as instance:
        materialize(
            [slow_export], instance=instance, partition_key=sys.argv[1],
            resources={"io_manager": ExportIOManager(store=ExportStore(destination=sys.argv[2]))},
        )
    """
)


@pytest.mark.slow
def test_sigterm_stops_an_export_at_once_without_a_retry_and_frees_its_slot(
    dagster_home: Path, tmp_path: Path
) -> None:
    script = tmp_path / "stoppable_export.py"
    script.write_text(STOPPABLE_EXPORT)
    process = subprocess.Popen(
        [sys.executable, str(script), PARTITION, str(tmp_path / "out")],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with DagsterInstance.get() as instance:
            _wait_for(lambda: len(_pool(instance)[0]) == 1, "the export's slot", [process])
            run_id = _pool(instance)[0][0]

            def computing() -> bool:  # the step's first instruction records the process
                run = instance.get_run_by_id(run_id)
                return run is not None and RUN_PROCESS_TAG in run.tags

            _wait_for(computing, "the export's step to start", [process])
            process.send_signal(signal.SIGTERM)
            # Before: the RetryPolicy retried the interrupted step and the process kept running.
            process.communicate(timeout=120)
            assert process.returncode != 0
            run = instance.get_run_by_id(run_id)
            assert run is not None
            assert run.status == DagsterRunStatus.FAILURE
            assert instance.all_logs(run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY) == []
            failures = instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
            assert len(failures) == 1
            failure = failures[0].dagster_event
            assert failure is not None
            # Dagster's own interrupt, or ours if the signal came while the export was writing.
            data = failure.step_failure_data
            assert data.error_source.value == "INTERRUPT" or (
                data.user_failure_data is not None
                and "(DagsterExecutionInterruptedError)" in str(data.user_failure_data.description)
            )
            # Dagster freed the slot itself: no sweep was needed.
            assert _pool(instance) == ([], [])
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


# A code location for the daemon test: one slow export-pool step launched by a sensor (the run
# worker is a `DefaultRunLauncher` subprocess of the code server), and the dead-run sweep
# sensor as definitions.py wires it.
DAEMON_LOCATION = textwrap.dedent(
    """
    import os, time
    from pathlib import Path
    from dagster import (
        AssetExecutionContext, DailyPartitionsDefinition, DefaultSensorStatus, Definitions,
        RunRequest, SkipReason, asset, define_asset_job, sensor,
    )
    from export_assets.defs.operations.run_sweep import dead_run_sweep_sensor, record_run_process

    PARTITION = os.environ["TEST_PARTITION"]

    @asset(pool=os.environ["TEST_POOL"], partitions_def=DailyPartitionsDefinition(PARTITION))
    def slow_write(context: AssetExecutionContext) -> None:
        record_run_process(context)
        time.sleep(3600)

    slow_job = define_asset_job("slow_job", selection=[slow_write])

    @sensor(job=slow_job, minimum_interval_seconds=1, default_status=DefaultSensorStatus.RUNNING)
    def start_slow_run(context):
        trigger = Path(os.environ["TEST_TRIGGER"])
        if not trigger.exists():
            return SkipReason("no trigger")
        return RunRequest(run_key=trigger.read_text(), partition_key=PARTITION)

    defs = Definitions(
        assets=[slow_write], jobs=[slow_job], sensors=[start_slow_run, dead_run_sweep_sensor]
    )
    """
)
DAEMON_WAIT_SECONDS = 240  # daemon and code server start-up, a sensor tick, a run launch


class Daemon:
    """`dagster-daemon run` on the test location, in its own process group."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.log_path = tmp_path / f"daemon-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(tmp_path / "workspace.yaml")],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill_group(self) -> None:
        """SIGKILL to the daemon, its code server, run workers and step processes."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        self.kill_group()


def _wait_until(condition: Callable[[], bool], what: str, daemon: Daemon) -> float:
    """Seconds it took for ``condition`` to hold."""
    begin = time.monotonic()
    while not condition():
        assert daemon.process.poll() is None, f"the daemon exited:\n{daemon.log()}"
        if time.monotonic() - begin > DAEMON_WAIT_SECONDS:
            pytest.fail(f"waited {DAEMON_WAIT_SECONDS} s for {what}:\n{daemon.log()}")
        time.sleep(0.5)
    return time.monotonic() - begin


def _run_holding_a_slot(instance: DagsterInstance, run_key: str) -> RunProcess | None:
    """The process of the run started for ``run_key``, once it holds its slot."""
    runs = instance.get_runs(filters=RunsFilter(tags={"dagster/run_key": run_key}))
    if not runs or runs[0].run_id not in _pool(instance)[0]:
        return None
    return RunProcess.from_tag(runs[0].tags.get(RUN_PROCESS_TAG, ""), runs[0].run_id)


def _wait_for_run_holding_a_slot(
    instance: DagsterInstance, run_key: str, daemon: Daemon
) -> RunProcess:
    found: list[RunProcess] = []

    def holds() -> bool:
        process = _run_holding_a_slot(instance, run_key)
        found.extend([process] if process else [])
        return process is not None

    _wait_until(holds, f"the run of {run_key!r} to hold its slot", daemon)
    return found[-1]


def _status(instance: DagsterInstance, run_id: str) -> DagsterRunStatus:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run.status


@pytest.mark.slow
def test_daemon_launched_runs_end_failed_and_free_the_pool_when_worker_or_daemon_is_killed(
    dagster_home: Path, tmp_path: Path
) -> None:
    (tmp_path / "location.py").write_text(DAEMON_LOCATION)
    (tmp_path / "workspace.yaml").write_text(
        "load_from:\n"
        f"  - python_file:\n      relative_path: {tmp_path / 'location.py'}\n"
        f"      working_directory: {ROOT}\n"
    )
    trigger = tmp_path / "trigger"
    env = {
        **os.environ,
        "TEST_PARTITION": PARTITION,
        "TEST_POOL": EXPORT_WRITERS_POOL,
        "TEST_TRIGGER": str(trigger),
    }
    timings: dict[str, float] = {}
    daemon = Daemon(tmp_path, env)
    try:
        with DagsterInstance.get() as instance:
            # 0. kill -9 of the step's process (multiprocess executor): the run worker fails it.
            trigger.write_text("step-kill")
            run_worker = _wait_for_run_holding_a_slot(instance, "step-kill", daemon)
            step_pids = {
                entry.dagster_event.pid
                for entry in instance.all_logs(
                    run_worker.run_id, of_type=DagsterEventType.STEP_WORKER_STARTED
                )
                if entry.dagster_event and entry.dagster_event.pid
            }
            assert len(step_pids) == 1
            assert run_worker.pid not in step_pids  # the tag names the run worker, not the step
            os.kill(step_pids.pop(), signal.SIGKILL)
            timings["step: FAILURE"] = _wait_until(
                lambda: _status(instance, run_worker.run_id) == DagsterRunStatus.FAILURE,
                "the run whose step process was killed to fail",
                daemon,
            )
            timings["step: slot freed"] = _wait_until(
                lambda: _pool(instance) == ([], []), "the killed step's slot to be freed", daemon
            )

            # 1. kill -9 of the run worker: its code server fails the run; the slot is freed.
            trigger.write_text("worker-kill")
            worker = _wait_for_run_holding_a_slot(instance, "worker-kill", daemon)
            assert worker.pid != daemon.process.pid  # the run worker, not the daemon
            os.kill(worker.pid, signal.SIGKILL)
            first = worker.run_id
            timings["worker: FAILURE"] = _wait_until(
                lambda: _status(instance, first) == DagsterRunStatus.FAILURE,
                "the run whose worker was killed to fail",
                daemon,
            )
            timings["worker: slot freed"] = _wait_until(
                lambda: _pool(instance) == ([], []), "the killed worker's slot to be freed", daemon
            )

            # 2. kill -9 of the daemon with everything it started: nobody is left to end the run.
            trigger.write_text("daemon-kill")
            worker = _wait_for_run_holding_a_slot(instance, "daemon-kill", daemon)
            second = worker.run_id
            daemon.kill_group()
            assert _status(instance, second) == DagsterRunStatus.STARTED
            assert _pool(instance)[0] == [second]  # the leak, as observed

            # The next daemon's sweep sensor ends the run and frees the pool.
            daemon = Daemon(tmp_path, env)
            timings["daemon: FAILURE"] = _wait_until(
                lambda: _status(instance, second) == DagsterRunStatus.FAILURE,
                "the sweep to fail the run of the killed daemon",
                daemon,
            )
            timings["daemon: slot freed"] = _wait_until(
                lambda: _pool(instance) == ([], []), "the sweep to free its slot", daemon
            )
            assert instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED])) == []
    finally:
        daemon.stop()
    print("seconds to recover:", {name: round(value, 1) for name, value in timings.items()})
