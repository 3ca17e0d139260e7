"""The export jobs run their steps in the run worker's process unless run config asks otherwise."""

from __future__ import annotations

import os
from typing import Any

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    Definitions,
    JobDefinition,
    asset,
    define_asset_job,
    execute_job,
    reconstructable,
    validate_run_config,
)

from export_assets.defs.executor import export_executor
from export_assets.defs.exports.jobs import DAILY_JOBS
from export_assets.defs.reports.jobs import weekly_report_job

EXPORT_JOBS = [*DAILY_JOBS, weekly_report_job]


@asset
def first() -> int:
    return os.getpid()


@asset
def second(first: int) -> int:
    return os.getpid()


def two_step_job() -> JobDefinition:
    """A job of two steps with the exports' executor, rebuilt by name in a run worker."""
    job = define_asset_job("two_steps", selection=[first, second], executor_def=export_executor)
    return Definitions(assets=[first, second], jobs=[job]).resolve_job_def("two_steps")


def step_pids(instance: DagsterInstance, run_config: dict[str, Any]) -> tuple[int, set[int]]:
    """The pid that ran the run, and the pids that ran its steps."""
    with execute_job(reconstructable(two_step_job), instance, run_config=run_config) as result:
        assert result.success
        events = result.all_events
    (run_pid,) = {e.pid for e in events if e.event_type == DagsterEventType.RUN_START}
    steps = {e.pid for e in events if e.event_type == DagsterEventType.STEP_START}
    assert run_pid is not None
    assert None not in steps
    return run_pid, {pid for pid in steps if pid is not None}


def test_steps_run_in_the_run_process_by_default(instance: DagsterInstance) -> None:
    run_pid, pids = step_pids(instance, {})
    assert pids == {run_pid}


@pytest.mark.slow  # a process per step, each importing the code location
def test_multiprocess_is_one_run_config_away(disk_instance: DagsterInstance) -> None:
    run_pid, pids = step_pids(disk_instance, {"execution": {"config": {"multiprocess": {}}}})
    assert run_pid not in pids
    assert len(pids) == 2


@pytest.mark.parametrize("job", [job.name for job in EXPORT_JOBS])
def test_every_export_job_defaults_to_in_process(job: str) -> None:
    from export_assets.definitions import defs

    resolved = validate_run_config(defs.resolve_job_def(job), None)
    # Resolved config names the executor: {"export_executor": {"in_process": {...}}}.
    assert [list(mode) for mode in resolved["execution"].values()] == [["in_process"]]
