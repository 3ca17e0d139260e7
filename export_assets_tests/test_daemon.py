"""SC-004: with `dagster-daemon run` up, a schedule tick that is due starts its run in a minute."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from dagster import DagsterInstance, RunRecord, RunsFilter

from export_assets.lib.sample import SampleDeployment

ROOT = Path(__file__).resolve().parents[1]
DAEMON = ROOT / ".venv" / "bin" / "dagster-daemon"
SCHEDULE = "daily_export_schedule"
WAIT_SECONDS = 300  # startup + the next minute boundary + the launch, on a busy machine
SCHEDULED_TAG = ".dagster/scheduled_execution_time"


@pytest.fixture
def daemon(
    tmp_path: Path, sample_deployment: SampleDeployment
) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """`dagster-daemon run` on a fresh DAGSTER_HOME, the daily schedule ticking every minute."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "EXPORT_DAILY_CRON": "* * * * *",  # test-only: a tick every minute
        "EXPORT_SCHEDULES_RUNNING": "1",  # schedules start RUNNING, no click in the UI
        "PROXYWHIRL_DB": str(sample_deployment.database),
        "EXPORT_DESTINATION": str(tmp_path / "exports"),
    }
    log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [str(DAEMON), "run", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the code server and runs die with it
    )
    try:
        yield home, process
    finally:
        for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


def _started_schedule_run(instance: DagsterInstance) -> RunRecord | None:
    records = instance.get_run_records(RunsFilter(tags={"dagster/schedule_name": SCHEDULE}))
    started = [r for r in records if r.start_time is not None]
    return min(started, key=lambda r: r.create_timestamp) if started else None


@pytest.mark.slow
def test_a_due_schedule_tick_starts_its_run_within_a_minute(
    daemon: tuple[Path, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    home, process = daemon
    deadline = time.monotonic() + WAIT_SECONDS
    record: RunRecord | None = None
    with DagsterInstance.from_config(str(home)) as instance:
        while record is None and time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
            time.sleep(2)
            record = _started_schedule_run(instance)
    log = (tmp_path / "daemon.log").read_text(errors="replace")[-3000:]
    assert record is not None, f"no run of {SCHEDULE} started in {WAIT_SECONDS} s:\n{log}"
    run = record.dagster_run
    assert run.job_name == "daily_export_job"
    assert run.tags["export/requested_by"] == SCHEDULE
    assert run.tags["export/template"] == "daily_export_job"
    due = datetime.fromisoformat(run.tags[SCHEDULED_TAG]).timestamp()
    assert record.start_time is not None
    # SC-004: from the tick's scheduled time to the run's start, at most one minute.
    assert record.start_time - due <= 60, f"started {record.start_time - due:.0f} s after the tick"
