"""The distributed deployment, for real: PostgreSQL storage, the Celery executor on Redis.

deploy/services.sh starts PostgreSQL and Redis on 127.0.0.1 (throwaway data); the instance
is deploy/dagster.postgres.yaml; two `dagster-celery` workers and `dagster-daemon` run the
code location of deploy/workspace.celery.yaml. A 3-day backfill of daily_export_job is
launched with `dagster job backfill`; the daemon runs it, and every step executes in a
Celery worker. Then the exports are verified and run history is read from PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from e2e.stack import (
    BACKFILL_DAYS,
    BIN,
    REQUESTED_BY,
    REQUESTED_BY_TAG,
    ROOT,
    SERVICES,
    Process,
    base_env,
    running,
    service_env,
    start,
    started_services,
    verify_partition,
    wait_for,
    write_sample,
)

PG_DATA_PARENT = Path("/tmp")  # noqa: S108 (where services.sh makes PostgreSQL's data folder)
WORKSPACE = "deploy/workspace.celery.yaml"
CELERY_CONFIG = "deploy/celery.yaml"
JOB = "daily_export_job"
WORKERS = 2
BACKFILL_TIMEOUT_SECONDS = 480.0
# A backfill's terminal statuses (Dagster's BulkActionStatus, by value: the enum is private).
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


@dataclass
class Deployment:
    env: dict[str, str]
    home: Path
    exports: Path
    processes: list[Process]
    logs: Path
    workers: dict[str, Process] = field(default_factory=dict)
    backfill_id: str = ""
    worker_pids: set[int] = field(default_factory=set)


@pytest.fixture(scope="module")
def services_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """PostgreSQL and Redis on 127.0.0.1 for this module; stopped and deleted after."""
    state = tmp_path_factory.mktemp("services")
    with started_services(state) as env:
        data = Path(env["EXPORT_SERVICES_PG_DIR"])
        yield state
    assert not data.exists(), f"services.sh stop left {data}"
    assert not (state / "env").exists()


@pytest.fixture(scope="module")
def services(services_state: Path) -> dict[str, str]:
    return service_env(services_state)


@pytest.fixture(scope="module")
def deployment(
    services: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """Workers and daemon up, the backfill launched and finished; all stopped after."""
    base = tmp_path_factory.mktemp("e2e-distributed")
    home = base / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    exports = base / "exports"
    env = base_env(home, write_sample(base / "proxywhirl"), exports) | services
    logs = base / "logs"
    # Create the schema once, before several processes would race to create it.
    subprocess.run(  # noqa: S603
        [str(BIN / "dagster"), "instance", "migrate"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    with running([]) as processes:
        deployment = Deployment(env, home, exports, processes, logs)
        suffix = uuid.uuid4().hex[:6]
        for number in range(1, WORKERS + 1):
            name = f"e2e-worker{number}-{suffix}"
            worker = start(
                name,
                [
                    str(BIN / "dagster-celery"),
                    "worker",
                    "start",
                    "-A",
                    "dagster_celery.app",
                    "-y",
                    CELERY_CONFIG,
                    "-n",
                    name,
                ],
                env,
                logs,
            )
            processes.append(worker)
            deployment.workers[name] = worker
        for name, worker in deployment.workers.items():
            wait_for(f"celery worker {name}", partial(_worker_ready, worker, name), 120, [worker])
        daemon = start(
            "dagster-daemon", [str(BIN / "dagster-daemon"), "run", "-w", WORKSPACE], env, logs
        )
        processes.append(daemon)

        launched = subprocess.run(  # noqa: S603
            [
                str(BIN / "dagster"),
                "job",
                "backfill",
                "-w",
                WORKSPACE,
                "-j",
                JOB,
                "--from",
                BACKFILL_DAYS[0],
                "--to",
                BACKFILL_DAYS[-1],
                "--noprompt",
                "--tags",
                json.dumps({REQUESTED_BY_TAG: REQUESTED_BY}),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        found = re.search(r"Launched backfill job `(\w+)`", launched.stdout)
        assert found, f"no backfill id in: {launched.stdout}\n{launched.stderr}"
        deployment.backfill_id = found.group(1)

        with _instance(env) as instance:

            def finished() -> bool | None:
                backfill = instance.get_backfill(deployment.backfill_id)
                assert backfill is not None
                records = instance.get_run_records(
                    RunsFilter(tags={"dagster/backfill": deployment.backfill_id})
                )
                # Collect the workers' pids while they run: each pool child counts.
                for worker in deployment.workers.values():
                    deployment.worker_pids |= worker.group_pids()
                done = backfill.status.value in DONE and all(
                    r.dagster_run.is_finished for r in records
                )
                return True if done else None

            wait_for(
                f"backfill {deployment.backfill_id}", finished, BACKFILL_TIMEOUT_SECONDS, processes
            )
        yield deployment


def _worker_ready(worker: Process, name: str) -> bool | None:
    """True once celery logged ``{name}@host ready.``."""
    return True if re.search(rf"{re.escape(name)}@\S+ ready\.", worker.tail(200)) else None


class _instance:
    """The PostgreSQL-backed instance, read from this process with the deployment's env."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.patch = pytest.MonkeyPatch()
        self.instance: DagsterInstance | None = None

    def __enter__(self) -> DagsterInstance:
        for name, value in self.env.items():
            if name.startswith(("DAGSTER_", "EXPORT_", "PROXYWHIRL_")):
                self.patch.setenv(name, value)
        self.instance = DagsterInstance.get()
        return self.instance

    def __exit__(self, *_: object) -> None:
        if self.instance is not None:
            self.instance.dispose()
        self.patch.undo()


def _job_assets() -> list[str]:
    from export_assets.definitions import defs

    job = defs.resolve_job_def(JOB)
    return sorted(key.to_user_string() for key in job.asset_layer.executable_asset_keys)


RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def test_backfill_runs_succeed_and_exports_verify(deployment: Deployment) -> None:
    with _instance(deployment.env) as instance:
        records = instance.get_run_records(
            RunsFilter(tags={"dagster/backfill": deployment.backfill_id})
        )
    # `dagster job backfill` submits a run per day (the daemon's backfills from the UI run
    # ranges): either way every day is one partition, published by the run that covered it.
    runs = [r.dagster_run for r in records]
    run_of: dict[str, str] = {}
    for run in runs:
        assert run.status == DagsterRunStatus.SUCCESS
        assert run.tags[REQUESTED_BY_TAG] == REQUESTED_BY
        for day in _days_of(run.tags):
            run_of[day] = run.run_id
    assert sorted(run_of) == list(BACKFILL_DAYS)
    assets = _job_assets()
    assert {"proxy_list", "validation_events"} <= set(assets)
    for day in BACKFILL_DAYS:
        for asset in assets:
            manifest = verify_partition(deployment.exports, asset, day)
            assert manifest["run_id"] == run_of[day]


def _days_of(tags: Mapping[str, str]) -> list[str]:
    """The days a run covers: its partition, or its range's days."""
    if "dagster/partition" in tags:
        return [tags["dagster/partition"]]
    start, end = date.fromisoformat(tags[RANGE_START]), date.fromisoformat(tags[RANGE_END])
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def test_every_step_executed_in_a_celery_worker(deployment: Deployment) -> None:
    worker_names = {f"{name}@" for name in deployment.workers}
    used: set[str] = set()
    with _instance(deployment.env) as instance:
        records = instance.get_run_records(
            RunsFilter(tags={"dagster/backfill": deployment.backfill_id})
        )
        for record in records:
            run_id = record.dagster_run.run_id
            logs = instance.all_logs(run_id)
            started = {
                e.step_key: e.dagster_event
                for e in logs
                if e.dagster_event and e.dagster_event_type == DagsterEventType.STEP_START
            }
            delegated = {}
            for entry in logs:
                event = entry.dagster_event
                if (
                    event
                    and event.event_type == DagsterEventType.ENGINE_EVENT
                    and ("in celery worker" in entry.message)
                ):
                    metadata = event.engine_event_data.metadata
                    delegated[entry.step_key] = str(metadata["Celery worker"].value)
            assert started, f"run {run_id} started no step"
            assert set(delegated) == set(started), f"run {run_id}: steps not sent to Celery"
            for step, worker in delegated.items():
                assert any(worker.startswith(n) for n in worker_names), (step, worker)
                used.add(worker)
            for step, event in started.items():
                assert event is not None
                assert event.pid in deployment.worker_pids, (
                    f"{step} of run {run_id} ran in pid {event.pid}, not in a worker"
                )
    print(f"steps executed by: {sorted(used)}")


def test_run_history_lives_in_postgresql(deployment: Deployment) -> None:
    import psycopg2  # type: ignore[import-untyped]

    env = deployment.env
    connection = psycopg2.connect(
        host=env["DAGSTER_PG_HOST"],
        port=int(env["DAGSTER_PG_PORT"]),
        dbname=env["DAGSTER_PG_DB"],
        user=env["DAGSTER_PG_USERNAME"],
        password=env["DAGSTER_PG_PASSWORD"],
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT runs.status, runs.pipeline_name FROM runs"
                " JOIN run_tags ON run_tags.run_id = runs.run_id"
                " WHERE run_tags.key = 'dagster/backfill' AND run_tags.value = %s",
                (deployment.backfill_id,),
            )
            rows = cursor.fetchall()
            cursor.execute(
                "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
                " AND run_id IN (SELECT run_id FROM run_tags WHERE key = 'dagster/backfill'"
                " AND value = %s)",
                (deployment.backfill_id,),
            )
            materializations = cursor.fetchone()
    finally:
        connection.close()
    assert rows
    assert set(rows) == {("SUCCESS", JOB)}
    assert materializations == (len(BACKFILL_DAYS) * len(_job_assets()),)
    # Nothing fell back to the SQLite storage an instance keeps under its home.
    assert not (deployment.home / "history").exists()


def test_the_database_password_appears_in_no_log_file_or_run(deployment: Deployment) -> None:
    password = deployment.env["DAGSTER_PG_PASSWORD"]
    for folder in (deployment.logs, deployment.home):
        for path in folder.rglob("*"):
            if path.is_file():
                assert password not in path.read_text(errors="replace"), f"password in {path}"
    with _instance(deployment.env) as instance:
        for record in instance.get_run_records(
            RunsFilter(tags={"dagster/backfill": deployment.backfill_id})
        ):
            assert password not in json.dumps(record.dagster_run.run_config)
            assert password not in json.dumps(dict(record.dagster_run.tags))


def test_services_refuse_a_second_start_and_explain(services_state: Path) -> None:
    before = (services_state / "env").read_text()
    second = subprocess.run(  # noqa: S603
        [str(SERVICES), "start", str(services_state)], capture_output=True, text=True
    )
    assert second.returncode == 1
    assert f"run '{SERVICES} stop {services_state}' first" in second.stderr
    assert (services_state / "env").read_text() == before


def test_services_name_their_usage_and_stop_nothing_quietly(tmp_path: Path) -> None:
    wrong = subprocess.run(  # noqa: S603
        [str(SERVICES), "restart", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert wrong.returncode == 2
    assert "usage:" in wrong.stderr
    assert "start|stop STATE_DIR" in wrong.stderr
    nothing = subprocess.run(  # noqa: S603
        [str(SERVICES), "stop", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"nothing to stop: no {tmp_path}/env" in nothing.stderr


def test_a_failed_start_stops_what_it_started(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "redis-server"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'redis-server: cannot bind' >&2\nexit 1\n")
    fake.chmod(0o755)
    state = tmp_path / "state"
    before = set(PG_DATA_PARENT.glob("export-assets-pg.*"))
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    failed = subprocess.run(  # noqa: S603
        [str(SERVICES), "start", str(state)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert failed.returncode != 0
    assert "redis-server: cannot bind" in failed.stderr
    assert "start failed: stopping what was started" in failed.stderr
    assert set(PG_DATA_PARENT.glob("export-assets-pg.*")) == before  # PostgreSQL's data deleted
    assert not (state / "env").exists()
