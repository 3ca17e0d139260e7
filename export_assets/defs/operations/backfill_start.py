"""Backfills start in seconds: the runs of a new job backfill, launched by a sensor.

Dagster's backfill daemon looks for new backfills every 30 s, a loop interval fixed in Dagster
(dagster-io/dagster#11649), so a backfill launched from the UI waits 0-30 s before its first
run exists: longer than a few days' exports take. The ``backfill_start_sensor`` runs on the
sensor daemon's 5 s loop and launches the runs of a new backfill of one of this code
location's partitioned jobs itself, as the backfill daemon would have: the same runs (a run
per range of up to ``max_partitions_per_run`` consecutive days, as the job's BackfillPolicy
says; a run per day without one), tagged ``dagster/backfill`` with the backfill's id and its
tags, with its run config. The backfill daemon then finds those runs (it skips every partition
that already has a run of the backfill) and finishes the backfill as it always does: its
status, its page in the UI, cancelling it.

Only what the daemon would plainly launch is started here: a backfill of one of this code
location's jobs (``STARTED_JOBS``: what a job page's backfill dialog and
``launchPartitionBackfill`` with a partition set launch), launched less than
``FRESH_SECONDS`` ago, not re-executing from a failure or selected steps, none of whose runs
exist yet. Anything else is left to the daemon (an asset backfill, or one of the UI's
implicit asset job from the asset graph, waits for its loop as before), as is a backfill
whose runs this sensor could not launch: then the daemon launches them on its next loop, so
a backfill never loses a day to this sensor.

One race remains, and it costs time, never data: should the backfill daemon's loop read the
backfill in the instant between this sensor's evaluation and the creation of its runs, both
launch the same days, and the partition lease (``lib.exports.lease``) makes the second
export of a day wait for the first and publish the same data again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from dagster import (
    BackfillPolicy,
    DagsterInstance,
    DefaultSensorStatus,
    JobDefinition,
    PartitionsDefinition,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
    serialize_value,
)

from export_assets.defs.exports.jobs import DAILY_JOBS
from export_assets.defs.operations.audit import BACKFILL_TAG, RANGE_END_TAG, RANGE_START_TAG
from export_assets.defs.operations.export_audit_log import audit_log_job
from export_assets.defs.reports.jobs import weekly_report_job

PARTITION_SET_TAG = "dagster/partition_set"
PARTITION_SET_SUFFIX = "_partition_set"
FRESH_SECONDS = 120.0
"""A backfill older than this is the backfill daemon's (it has looked at it by then)."""
RECENT_BACKFILLS = 20
"""Backfills read per evaluation, newest first: more than are launched in one loop."""

STARTED_JOBS = [*DAILY_JOBS, weekly_report_job, audit_log_job]
"""The jobs whose backfills this sensor starts: every partitioned job of the code location."""


def partition_runs(
    partitions_def: PartitionsDefinition,
    policy: BackfillPolicy | None,
    partition_names: Sequence[str],
) -> list[tuple[str, str]]:
    """The runs that the backfill daemon launches for ``partition_names``, as (first, last)
    partition keys: consecutive partitions (in the definition's order) in runs of at most the
    policy's ``max_partitions_per_run``, each partition alone without a ranged policy.

    Raises KeyError for a partition name the definition does not have.
    """
    if policy is None or policy.max_partitions_per_run == 1:
        return [(name, name) for name in partition_names]
    order = {key: index for index, key in enumerate(partitions_def.get_partition_keys())}
    wanted = sorted({order[name] for name in partition_names})
    most = policy.max_partitions_per_run or len(wanted)
    keys = list(order)
    runs: list[tuple[str, str]] = []
    start = 0
    for end in range(1, len(wanted) + 1):
        # A run ends where the days stop being consecutive, or at the policy's size.
        if end == len(wanted) or wanted[end] != wanted[end - 1] + 1 or end - start == most:
            runs.append((keys[wanted[start]], keys[wanted[end - 1]]))
            start = end
    return runs


def run_requests(job: JobDefinition, backfill: Any) -> list[RunRequest]:
    """The backfill daemon's runs for ``backfill`` (a job backfill of ``job``)."""
    partitions_def = job.partitions_def
    if partitions_def is None:
        return []
    policy = job.backfill_policy
    ranged = policy is not None and policy.max_partitions_per_run != 1
    tags = {
        **(backfill.tags or {}),
        BACKFILL_TAG: backfill.backfill_id,
        PARTITION_SET_TAG: f"{job.name}{PARTITION_SET_SUFFIX}",
    }
    requests = []
    for first, last in partition_runs(partitions_def, policy, backfill.partition_names):
        requests.append(
            RunRequest(
                run_key=f"{backfill.backfill_id}:{first}..{last}",
                job_name=job.name,
                # The job page's backfill dialog names the job's assets (all, or those chosen).
                asset_selection=list(backfill.asset_selection or []) or None,
                run_config=backfill.run_config or {},
                # A ranged run is told its days by tags, as the daemon tells it; a one-day
                # run by its partition key, which the sensor daemon turns into the same tags.
                tags={**tags, RANGE_START_TAG: first, RANGE_END_TAG: last} if ranged else tags,
                partition_key=None if ranged else first,
            )
        )
    return requests


_instances: dict[str, DagsterInstance] = {}
_instances_lock = threading.Lock()


def _instance(context: SensorEvaluationContext) -> DagsterInstance:
    """The daemon's instance, built once per code-server process. A tick's own
    ``context.instance`` is built anew from its reference on every tick (every 5 s), which
    costs far more CPU than reading the recent backfills."""
    ref = context.instance_ref
    if ref is None:  # evaluated in process (tests, `dagster sensor preview`)
        return context.instance
    key = serialize_value(ref)
    with _instances_lock:
        if key not in _instances:
            _instances[key] = DagsterInstance.from_ref(ref)
        return _instances[key]


def _startable(context: SensorEvaluationContext, now: float) -> Iterator[tuple[JobDefinition, Any]]:
    """This location's new job backfills that the daemon has not started, with their job."""
    ours = {job.name for job in STARTED_JOBS}
    location = context.code_location_origin
    repository_def = context.repository_def
    if repository_def is None:
        return
    instance = _instance(context)
    for backfill in instance.get_backfills(limit=RECENT_BACKFILLS):
        origin = backfill.partition_set_origin
        if (
            backfill.status.value != "REQUESTED"
            or origin is None  # an asset backfill: the daemon's
            or backfill.from_failure
            or backfill.reexecution_steps
            or backfill.last_submitted_partition_name  # the daemon has begun it
            or not backfill.partition_names
            or now - backfill.backfill_timestamp > FRESH_SECONDS
        ):
            continue
        repository = origin.repository_origin
        if repository.repository_name != context.repository_name:
            continue
        if location is not None and repository.code_location_origin.location_name != (
            location.location_name
        ):
            continue
        job_name = origin.partition_set_name.removesuffix(PARTITION_SET_SUFFIX)
        if job_name not in ours:
            continue
        if instance.get_run_ids(RunsFilter(tags={BACKFILL_TAG: backfill.backfill_id}), limit=1):
            continue  # the daemon, or an earlier tick, has launched its runs
        yield repository_def.get_job(job_name), backfill


@sensor(
    name="backfill_start_sensor",
    jobs=STARTED_JOBS,
    minimum_interval_seconds=1,  # evaluated on every loop of the sensor daemon (5 s)
    default_status=DefaultSensorStatus.RUNNING,
    description="Launches the runs of a new backfill of this location's jobs within seconds "
    "(the backfill daemon looks every 30 s); the daemon then finishes the backfill as usual.",
)
def backfill_start_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    requests: list[RunRequest] = []
    started: list[str] = []
    for job, backfill in _startable(context, time.time()):
        try:
            runs = run_requests(job, backfill)
        except KeyError as exc:  # a partition the job does not have: the daemon reports it
            context.log.warning(f"backfill {backfill.backfill_id} left to the daemon: {exc}")
            continue
        requests += runs
        started.append(f"{backfill.backfill_id} ({job.name}, {len(runs)} run(s))")
    if not requests:
        return SkipReason("no new backfill of this location's jobs")
    context.log.info(f"starting backfill(s) {', '.join(started)}")
    return SensorResult(run_requests=requests)
