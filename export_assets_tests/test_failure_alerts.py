"""Failure alerts: every failed export run in the instance is notified once, however launched.

Dagster's run-failure sensor only reacts to runs whose code-location origin is its own
location; runs executed in process (`export-assets materialize`, `dagster asset materialize`,
`dagster job execute`, `materialize(...)`) have no origin, so `export_cli_failure_sensor`
notifies those. Outside the daemon (no location, as in the tick tests here) the run-failure
sensor sees them too: the `export/failure_notified` tag keeps either sensor from notifying a
run twice. The slow daemon test shows the split where it matters, in `dagster-daemon run`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunsFilter,
    SensorDefinition,
    asset,
    build_sensor_context,
    materialize,
)

from export_assets.definitions import defs
from export_assets.defs.exports import proxy_list
from export_assets.defs.operations.sensors import (
    EXPORT_SENSORS,
    FAILURE_NOTIFIED_TAG,
    export_cli_failure_sensor,
    export_failure_sensor,
)
from export_assets.defs.resources.notifier import Notifier
from export_assets.lib.sample import SampleDeployment
from export_assets_tests.conftest import export_resources
from export_assets_tests.test_notify import (
    notifier,
    running_smtp_server,
    running_webhook_server,
)

ROOT = Path(__file__).resolve().parents[1]
PARTITION = "2026-11-20"
# The code location as the daemon loads it, for the sensors' view of "our" jobs and assets.
REPOSITORY = defs.get_repository_def()
CLI = Path(sys.executable).parent / "export-assets"


class _Records(logging.Handler):
    """Every record logged through the sensor's own logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def warnings(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == logging.WARNING]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DagsterInstance]:
    """A persistent SQLite instance in a fresh DAGSTER_HOME (the CLI's instance too)."""
    directory = tmp_path / "dagster_home"
    directory.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(directory))
    with DagsterInstance.get() as instance:
        yield instance


class Ticks:
    """Evaluates sensors as the daemon does, one tick at a time, keeping each one's cursor."""

    def __init__(self, instance: DagsterInstance, notifier: Notifier) -> None:
        self.instance = instance
        self.notifier = notifier
        self.cursors: dict[str, str | None] = {}
        self.log = _Records()

    def tick(self, sensor: SensorDefinition) -> Any:
        context = build_sensor_context(
            instance=self.instance,
            cursor=self.cursors.get(sensor.name),
            sensor_name=sensor.name,
            repository_def=REPOSITORY,
            resources={"notifier": self.notifier},
        )
        context.log.addHandler(self.log)
        result = sensor.evaluate_tick(context)
        self.cursors[sensor.name] = result.cursor
        return result

    def tick_both(self) -> None:
        # The in-process sensor first: in the daemon the two never see the same run.
        self.tick(export_cli_failure_sensor)
        self.tick(export_failure_sensor)


def failed_materialization(instance: DagsterInstance, tmp_path: Path, who: str) -> str:
    """A failed export run executed in process (as `dagster asset materialize`): no database."""
    result = materialize(
        [proxy_list],
        partition_key=PARTITION,
        instance=instance,
        raise_on_error=False,
        resources=export_resources(tmp_path / "missing" / "proxies.db", tmp_path / "exports"),
        tags={"export/requested_by": who},
    )
    assert not result.success
    return result.run_id


def notified_run_ids(mails: list[Any], posts: list[tuple[dict[str, str], bytes]]) -> list[str]:
    """The run ids of the emails (sorted), then those of the webhook POSTs (sorted)."""
    pattern = re.compile(r"Run (\S+) of ")
    from_mail = [pattern.findall(m.get_payload(decode=True).decode())[0] for m in mails]
    from_posts = [json.loads(body)["run_id"] for _, body in posts]
    return sorted(from_mail) + sorted(from_posts)


def test_the_failure_sensors_are_wired() -> None:
    assert export_cli_failure_sensor in EXPORT_SENSORS
    assert export_failure_sensor in EXPORT_SENSORS


def test_each_failed_in_process_run_is_notified_once_across_ticks(
    home: DagsterInstance, tmp_path: Path
) -> None:
    with running_smtp_server() as (port, mailbox), running_webhook_server() as (url, received):
        ticks = Ticks(home, notifier(port, url))
        ticks.tick_both()  # first look: the sensors start from now
        assert mailbox.messages == []
        assert received.posts == []

        runs = [failed_materialization(home, tmp_path, who) for who in ("alice", "bob", "carol")]
        ticks.tick_both()
        assert notified_run_ids(mailbox.messages, received.posts) == sorted(runs) * 2
        ticks.tick_both()  # a second tick: nothing new, nothing sent again
        assert notified_run_ids(mailbox.messages, received.posts) == sorted(runs) * 2

    for run_id in runs:
        run = home.get_run_by_id(run_id)
        assert run is not None
        assert run.tags[FAILURE_NOTIFIED_TAG] == "export_cli_failure_sensor"
    assert not ticks.log.warnings()


def test_a_run_the_run_failure_sensor_notified_is_not_notified_again(
    home: DagsterInstance, tmp_path: Path
) -> None:
    with running_webhook_server() as (url, received):
        ticks = Ticks(home, Notifier(webhook_url=url))
        ticks.tick_both()
        run_id = failed_materialization(home, tmp_path, "alice")
        # The other order: the run-failure sensor first (it sees the run outside the daemon).
        ticks.tick(export_failure_sensor)
        ticks.tick(export_cli_failure_sensor)
        ticks.tick_both()
    assert notified_run_ids([], received.posts) == [run_id]
    run = home.get_run_by_id(run_id)
    assert run is not None
    assert run.tags[FAILURE_NOTIFIED_TAG] == "export_failure_sensor"
    assert any(
        f"failure of run {run_id} was already handled by export_failure_sensor" in r.getMessage()
        for r in ticks.log.records
    )


@asset
def other_location_asset() -> None:
    raise RuntimeError("not an export")


def test_failed_runs_of_other_code_locations_are_not_notified(
    home: DagsterInstance, tmp_path: Path
) -> None:
    """Same instance, same implicit asset job name, but none of our assets: not ours."""
    with running_webhook_server() as (url, received):
        ticks = Ticks(home, Notifier(webhook_url=url))
        ticks.tick(export_cli_failure_sensor)
        foreign = materialize([other_location_asset], instance=home, raise_on_error=False)
        assert not foreign.success
        ours = failed_materialization(home, tmp_path, "alice")
        result = ticks.tick(export_cli_failure_sensor)
    assert notified_run_ids([], received.posts) == [ours]
    assert foreign.run_id not in (result.skip_message or "")


def test_an_unconfigured_notifier_warns_once_per_tick_with_the_variables_to_set(
    home: DagsterInstance, tmp_path: Path
) -> None:
    ticks = Ticks(home, Notifier())
    ticks.tick_both()
    assert len(ticks.log.warnings()) == 1  # export_cli_failure_sensor's tick; no failed run yet

    # Two failed runs, each sensor one tick: one warning per tick, not one per run.
    for who in ("alice", "bob"):
        failed_materialization(home, tmp_path, who)
    before = len(ticks.log.warnings())
    ticks.tick(export_failure_sensor)
    assert len(ticks.log.warnings()) == before + 1
    result = ticks.tick(export_cli_failure_sensor)
    assert len(ticks.log.warnings()) == before + 2
    for warning in ticks.log.warnings():
        assert warning.startswith("failure notifications are off")
        for variable in ("EXPORT_SMTP_HOST", "EXPORT_EMAIL_TO", "EXPORT_WEBHOOK_URL"):
            assert variable in warning
    # The tick's summary in the UI says so too.
    assert "failure notifications are off" in (result.skip_message or "")
    # Handled (tagged), so configuring a channel later does not replay them.
    for run in home.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE])):
        assert FAILURE_NOTIFIED_TAG in run.tags

    ticks.tick_both()  # no new failure: the plain sensor still warns on its tick
    assert len(ticks.log.warnings()) == before + 3


def test_an_smtp_host_without_recipients_is_named(home: DagsterInstance) -> None:
    ticks = Ticks(home, Notifier(smtp_host="127.0.0.1"))
    ticks.tick(export_cli_failure_sensor)
    [warning] = ticks.log.warnings()
    assert "EXPORT_SMTP_HOST is '127.0.0.1' but EXPORT_EMAIL_TO is empty" in warning


def test_a_cursor_that_is_not_the_sensors_own_is_replaced_with_a_warning(
    home: DagsterInstance, tmp_path: Path
) -> None:
    with running_webhook_server() as (url, received):
        ticks = Ticks(home, Notifier(webhook_url=url))
        run_id = failed_materialization(home, tmp_path, "alice")
        ticks.cursors["export_cli_failure_sensor"] = "not json"
        result = ticks.tick(export_cli_failure_sensor)
        [warning] = ticks.log.warnings()
        assert warning.startswith("cursor 'not json' of export_cli_failure_sensor is not")
        assert "watching run failures from now on" in warning
        assert json.loads(result.cursor)["after_storage_id"] > 0
        assert "first look" in (result.skip_message or "")
        ticks.tick(export_cli_failure_sensor)  # from the new cursor: nothing again
    assert received.posts == []
    run = home.get_run_by_id(run_id)
    assert run is not None
    assert FAILURE_NOTIFIED_TAG not in run.tags


@pytest.mark.slow
def test_failed_export_assets_materialize_runs_are_notified(
    home: DagsterInstance, tmp_path: Path, sample_deployment: SampleDeployment
) -> None:
    """The real CLI, in its own process, against the same SQLite instance. Its runs fail
    inside the run: the destination is a file (a missing database is refused before any
    run starts, so there would be no run to notify)."""
    (tmp_path / "exports").write_text("not a folder")
    env = {
        **os.environ,
        "PROXYWHIRL_DB": str(sample_deployment.database),
        "EXPORT_DESTINATION": str(tmp_path / "exports"),
        "EXPORT_REQUESTED_BY": "alice",
    }
    cli = [str(CLI), "materialize", "--last-days", "1"]
    with running_smtp_server() as (port, mailbox), running_webhook_server() as (url, received):
        ticks = Ticks(home, notifier(port, url))
        ticks.tick_both()
        for end in ("2026-11-19", "2026-11-20"):
            done = subprocess.run(
                [*cli, "--end-date", end], cwd=ROOT, env=env, capture_output=True, timeout=300
            )
            assert done.returncode == 1, done.stderr.decode()[-2000:]
        runs = [r.run_id for r in home.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))]
        assert len(runs) == 2
        ticks.tick_both()
        ticks.tick_both()
    assert notified_run_ids(mailbox.messages, received.posts) == sorted(runs) * 2
    [mail, _] = mailbox.messages
    assert "Requested by: alice" in mail.get_payload(decode=True).decode()  # type: ignore[union-attr]


FAILURE_SENSORS = ("export_failure_sensor", "export_cli_failure_sensor")
PARTITION_TAG = "dagster/partition"


def _ticks(daemon_log: Path, sensor: str) -> int:
    """How many ticks of ``sensor`` the daemon has started."""
    return daemon_log.read_text(errors="replace").count(
        f"Checking for new runs for sensor: {sensor}\n"
    )


def _wait_for(what: str, check: Callable[[], bool], seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"{what}: not within {seconds:g} s; daemon log:\n{tail}")
        time.sleep(1)


@pytest.mark.slow
def test_the_daemon_notifies_a_failed_cli_run_and_a_failed_launched_run_once_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample_deployment: SampleDeployment
) -> None:
    """The real daemon (the sensors know their code location there, unlike in a unit test).

    A failed `export-assets materialize` run (no origin) and a failed `dagster job launch`
    run (the location's origin, as from the UI): one webhook POST each, none on later ticks.
    """
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    daemon_log = tmp_path / "daemon.log"
    with running_webhook_server() as (url, received):
        # Both runs fail inside the run: the destination is a file (a missing database is
        # refused by the CLI before any run starts).
        (tmp_path / "exports").write_text("not a folder")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "PROXYWHIRL_DB": str(sample_deployment.database),
            "EXPORT_DESTINATION": str(tmp_path / "exports"),
            "EXPORT_WEBHOOK_URL": url,
        }
        for name in ("EXPORT_SMTP_HOST", "EXPORT_EMAIL_TO"):
            env.pop(name, None)
        with open(daemon_log, "wb") as log:
            daemon = subprocess.Popen(
                [str(CLI.parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            # Both sensors' first ticks set their cursors ("from now") before anything fails.
            for first in (
                "Sensor export_failure_sensor skipped: Initiating",
                "Sensor export_cli_failure_sensor skipped: first look",
            ):
                _wait_for(first, lambda f=first: f in daemon_log.read_text(), 240, daemon_log)  # type: ignore[misc]
            launch = subprocess.Popen(
                [
                    str(CLI.parent / "dagster"),
                    "job",
                    "launch",
                    "-w",
                    "workspace.yaml",
                    "-j",
                    "daily_export_job",
                    "--tags",
                    json.dumps({PARTITION_TAG: PARTITION}),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            cli = subprocess.run(
                [str(CLI), "materialize", "--last-days", "1", "--end-date", PARTITION],
                cwd=ROOT,
                env=env,
                capture_output=True,
                timeout=300,
            )
            assert cli.returncode == 1, cli.stderr.decode()[-2000:]
            launched_output = launch.communicate(timeout=300)[0].decode()
            assert launch.returncode == 0, launched_output[-2000:]

            with DagsterInstance.get() as instance:

                def failed() -> list[DagsterRun]:
                    return list(instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE])))

                _wait_for("both runs failed", lambda: len(failed()) == 2, 240, daemon_log)
                runs = {run.run_id: run for run in failed()}
                _wait_for("a POST per run", lambda: len(received.posts) >= 2, 120, daemon_log)
                # Two more ticks of each failure sensor (30 s apart): nothing sent again.
                seen = {name: _ticks(daemon_log, name) for name in FAILURE_SENSORS}
                _wait_for(
                    "two more ticks of each failure sensor",
                    lambda: all(_ticks(daemon_log, n) >= seen[n] + 2 for n in FAILURE_SENSORS),
                    150,
                    daemon_log,
                )
                notified = {run.run_id: run.tags.get(FAILURE_NOTIFIED_TAG) for run in failed()}
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()
    assert sorted(json.loads(body)["run_id"] for _, body in received.posts) == sorted(runs)
    by_origin = {
        ("launched" if run.remote_job_origin else "in process"): notified[run_id]
        for run_id, run in runs.items()
    }
    assert by_origin == {
        "launched": "export_failure_sensor",
        "in process": "export_cli_failure_sensor",
    }
