"""Dead-run sweep: a run whose process died (kill -9, OOM, host reboot) ends FAILURE and frees
its pool slots, whichever way it was launched.

Dagster frees a run's op-level pool slots only when the run process itself ends the run, or
(daemon only) ``run_monitoring.free_slots_after_run_end_seconds`` after some other party marked
the run finished; and run monitoring cannot tell a dead run worker of the default launcher, nor
a dead ``export-assets materialize``, from a live one. So a killed run would stay ``STARTED``
and keep its slot forever. The sweep closes that gap on this host:

- every run records the process that executes it (host, pid and the process's start time, so
  a reused pid is not mistaken for the run) in the run tag ``export/run_process``: the CLI at
  run creation, every export step at its start (``record_run_process``);
- runs without that tag (killed before any step) are judged by the pid that wrote their
  ``RUN_START`` event, guarded against pid reuse by the event's time, but only on a
  single-host (SQLite) instance, where every run ran on this host;
- a ``STARTED``/``CANCELING`` run whose process is gone is reported failed
  (``instance.report_run_failed``), and every finished run that still holds or waits for pool
  slots has them freed (``event_log_storage.free_concurrency_slots_for_run``).

It runs at the start of every ``export-assets materialize`` (no daemon needed) and from the
``dead_run_sweep_sensor`` (every 30 s in the daemon). A run that is stopped rather than killed
(SIGTERM, Ctrl-C, terminate) ends by itself: ``retries.stop_on_interrupt`` keeps the
step's RetryPolicy from retrying the interrupt.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

RUN_PROCESS_TAG = "export/run_process"
SWEEP_INTERVAL_SECONDS = 30
# A run in these states has a process that will write its end; if that process is gone, no
# one will (STARTING runs are run monitoring's: start_timeout_seconds in dagster.yaml).
_LIVE_STATUSES = [DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
_FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
# /proc start times are in clock ticks; an event's time is its writer's clock: allow rounding.
_CLOCK_SLACK_SECONDS = 2.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunProcess:
    """The process executing a run: host, pid, and its start time (boot clock ticks) if known."""

    run_id: str
    host: str
    pid: int
    start_ticks: int | None = None
    # For processes known only from an event: the process existed at this epoch time.
    seen_at: float | None = None

    def tag_value(self) -> str:
        start = "" if self.start_ticks is None else str(self.start_ticks)
        return f"host={self.host} pid={self.pid} start={start} run={self.run_id}"

    @classmethod
    def from_tag(cls, value: str, run_id: str) -> RunProcess | None:
        """The tag's process, or None when it is malformed or copied from another run."""
        fields = dict(part.partition("=")[::2] for part in value.split())
        try:
            recorded = cls(
                run_id=fields["run"],
                host=fields["host"],
                pid=int(fields["pid"]),
                start_ticks=int(fields["start"]) if fields.get("start") else None,
            )
        except (KeyError, ValueError):
            return None
        # A re-executed run inherits its parent's tags: that process is not this run's.
        return recorded if recorded.run_id == run_id else None

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


@dataclass
class SweepReport:
    """What one sweep did: runs marked failed, and runs whose pool slots were freed."""

    failed: list[str] = field(default_factory=list)
    freed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.failed and not self.freed:
            return "no dead runs, no leaked pool slots"
        return (
            f"marked {len(self.failed)} dead run(s) failed ({', '.join(self.failed) or '-'}); "
            f"freed the pool slots of {len(self.freed)} finished run(s) "
            f"({', '.join(self.freed) or '-'})"
        )


def this_host() -> str:
    return socket.gethostname()


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start ticks since boot) of a process from /proc, None if it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may hold spaces: fields follow the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _has_proc() -> bool:
    return Path("/proc/self/stat").exists()


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), None elsewhere or if gone."""
    stat = _proc_stat(pid) if _has_proc() else None
    return None if stat is None else stat[1]


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise RuntimeError("/proc/stat has no btime line")


def process_is_alive(process: RunProcess) -> bool:
    """Whether the recorded process still runs (a zombie or a reused pid is not alive)."""
    if not _has_proc():
        # No /proc (macOS): existence only; a reused pid keeps the run alive (the safe side).
        try:
            os.kill(process.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    stat = _proc_stat(process.pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    start_ticks = stat[1]
    if process.start_ticks is not None:
        return start_ticks == process.start_ticks
    if process.seen_at is not None:
        started = _boot_time() + start_ticks / os.sysconf("SC_CLK_TCK")
        # Started after the run's process wrote its event: the pid was reused.
        return started <= process.seen_at + _CLOCK_SLACK_SECONDS
    return True


def current_run_process(run_id: str, pid: int | None = None) -> RunProcess:
    """This host's process ``pid`` (default: this process) as the executor of ``run_id``."""
    pid = os.getpid() if pid is None else pid
    return RunProcess(
        run_id=run_id, host=this_host(), pid=pid, start_ticks=process_start_ticks(pid)
    )


def run_process_tags(run_id: str) -> dict[str, str]:
    """The tag recording this process as the one executing ``run_id`` (for run creation)."""
    return {RUN_PROCESS_TAG: current_run_process(run_id).tag_value()}


def _run_start_event(instance: DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, time) of the process that wrote the run's RUN_START event: its run process."""
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.RUN_START, limit=1
    ).records
    if not records:
        return None
    entry = records[0].event_log_entry
    pid = entry.dagster_event.pid if entry.dagster_event else None
    return None if pid is None else (pid, entry.timestamp)


def record_run_process(context: AssetExecutionContext) -> None:
    """Tag the run with the process executing it, seen from one of its steps.

    The run process is the one that wrote ``RUN_START``: this step's own process (in-process
    executor) or its parent (multiprocess executor). If it is neither (a step on a Celery or
    Kubernetes worker), nothing is recorded: this host cannot watch that process.
    """
    instance, run_id = context.instance, context.run.run_id
    run = instance.get_run_by_id(run_id)
    if run is None or RunProcess.from_tag(run.tags.get(RUN_PROCESS_TAG, ""), run_id):
        return
    started = _run_start_event(instance, run_id)
    if started is None or started[0] not in (os.getpid(), os.getppid()):
        return
    process = current_run_process(run_id, started[0])
    instance.add_run_tags(run_id, {RUN_PROCESS_TAG: process.tag_value()})


def _single_host(instance: DagsterInstance) -> bool:
    # SQLite storage lives in one DAGSTER_HOME on one machine: every run in it ran here.
    return "sqlite" in type(instance.run_storage).__name__.lower()


def run_process_of(instance: DagsterInstance, run: DagsterRun) -> RunProcess | None:
    """The process that executes ``run``, if this host can know it."""
    tag = run.tags.get(RUN_PROCESS_TAG)
    recorded = RunProcess.from_tag(tag, run.run_id) if tag is not None else None
    if tag is not None and recorded is None:
        log.warning(
            "run %s: tag %s=%r is not 'host=H pid=N start=T run=%s' (malformed, or copied "
            "from another run): ignored; the run is judged by the process that started it",
            run.run_id,
            RUN_PROCESS_TAG,
            tag,
            run.run_id,
        )
    if recorded is not None or not _single_host(instance):
        return recorded
    started = _run_start_event(instance, run.run_id)
    if started is None:
        return None
    pid, seen_at = started
    return RunProcess(run_id=run.run_id, host=this_host(), pid=pid, seen_at=seen_at)


def _fail_dead_runs(instance: DagsterInstance, report: SweepReport) -> None:
    host = this_host()
    for run in instance.get_runs(filters=RunsFilter(statuses=_LIVE_STATUSES)):
        process = run_process_of(instance, run)
        if process is None or process.host != host or process_is_alive(process):
            continue
        # Re-read: the run may have ended between the query and the liveness check.
        current = instance.get_run_by_id(run.run_id)
        if current is None or current.status not in _LIVE_STATUSES:
            continue
        instance.report_run_failed(
            current,
            f"The process executing this run ({process.describe()}) is gone (killed or "
            f"crashed) while the run was {current.status.value}: marked failed by the "
            "dead-run sweep, and its pool slots freed. Re-run the partition.",
        )
        report.failed.append(run.run_id)


def _free_slots_of_finished_runs(instance: DagsterInstance, report: SweepReport) -> None:
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return
    for run_id in sorted(storage.get_concurrency_run_ids()):
        run = instance.get_run_by_id(run_id)
        # A deleted run, or a finished one, will never release its slots itself.
        if run is None or run.status in _FINISHED:
            storage.free_concurrency_slots_for_run(run_id)
            report.freed.append(run_id)


def sweep_dead_runs(instance: DagsterInstance) -> SweepReport:
    """Fail this host's runs whose process is gone; free the slots of every finished run."""
    report = SweepReport()
    _fail_dead_runs(instance, report)
    _free_slots_of_finished_runs(instance, report)
    if report.failed or report.freed:
        log.warning("dead-run sweep: %s", report.summary())
    return report


@sensor(
    name="dead_run_sweep_sensor",
    minimum_interval_seconds=SWEEP_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description="Every 30 s: runs of this host whose process died (kill -9, crash) are marked "
    "failed, and finished runs that still hold pool slots (s3_writers) release them.",
)
def dead_run_sweep_sensor(context: SensorEvaluationContext) -> SkipReason:
    started = time.monotonic()
    report = sweep_dead_runs(context.instance)
    if report.failed or report.freed:
        context.log.warning(f"dead-run sweep: {report.summary()}")
    return SkipReason(f"{report.summary()} ({time.monotonic() - started:.2f} s)")
