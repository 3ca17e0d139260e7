"""The audit trail: `export-assets history` and export_audit_log read Dagster's instance back."""

from __future__ import annotations

import csv
import getpass
import gzip
import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from dagster import DagsterInstance, materialize

from export_assets.cli import main, requesting_user
from export_assets.defs.exports import proxy_list, validation_events
from export_assets.defs.operations.audit import HISTORY_FIELDS, export_history
from export_assets.defs.operations.export_audit_log import export_audit_log
from export_assets.defs.resources.io_manager import ExportIOManager
from export_assets.defs.resources.store import ExportStore
from export_assets.lib.sample import SampleDeployment
from export_assets_tests.conftest import export_resources


@dataclass(frozen=True)
class RecordedRuns:
    """A DAGSTER_HOME whose instance recorded three export runs, and where they exported."""

    home: Path
    exports: Path
    run_ids: dict[str, str]


@pytest.fixture(scope="module")
def recorded_runs(
    sample_deployment: SampleDeployment, tmp_path_factory: pytest.TempPathFactory
) -> RecordedRuns:
    """Two successful export runs by two people, then one that fails (made once a module;
    each test reads a copy of the instance, ``home``)."""
    root = tmp_path_factory.mktemp("history")
    home = root / "dagster_home"
    home.mkdir()
    exports = root / "exports"
    resources = export_resources(sample_deployment.database, exports)
    with DagsterInstance.from_config(str(home)) as instance:
        first = materialize(
            [proxy_list, validation_events],
            partition_key="2026-11-19",
            instance=instance,
            resources=resources,
            tags={"export/requested_by": "alice", "export/template": "daily_export_job"},
        )
        second = materialize(
            [proxy_list],
            partition_key="2026-11-20",
            instance=instance,
            resources=resources,
            tags={"export/requested_by": "bob"},
        )
        failed = materialize(
            [proxy_list],
            partition_key="2026-11-20",
            instance=instance,
            resources=export_resources(root / "gone" / "proxies.db", exports),
            tags={"export/requested_by": "carol", "export/template": "backup_job"},
            raise_on_error=False,
        )
    assert first.success
    assert second.success
    assert not failed.success
    run_ids = {"first": first.run_id, "second": second.run_id, "failed": failed.run_id}
    return RecordedRuns(home, exports, run_ids)


@pytest.fixture
def home(recorded_runs: RecordedRuns, tmp_path: Path) -> Path:
    """This test's own copy of the recorded instance's DAGSTER_HOME."""
    folder = tmp_path / "dagster_home"
    shutil.copytree(recorded_runs.home, folder)
    return folder


@pytest.fixture
def persistent_instance(home: Path) -> Iterator[DagsterInstance]:
    """A Dagster instance with SQLite storage in a folder, as DAGSTER_HOME gives the CLI."""
    with DagsterInstance.from_config(str(home)) as instance:
        yield instance


@pytest.fixture
def history_of_runs(recorded_runs: RecordedRuns) -> dict[str, str]:
    return recorded_runs.run_ids


def test_history_lists_materializations_and_the_failed_run(
    persistent_instance: DagsterInstance,
    history_of_runs: dict[str, str],
    recorded_runs: RecordedRuns,
) -> None:
    records = export_history(persistent_instance)
    assert sorted((r.run_id, r.asset, r.partition, r.status) for r in records) == sorted(
        [
            (history_of_runs["first"], "proxy_list", "2026-11-19", "success"),
            (history_of_runs["first"], "validation_events", "2026-11-19", "success"),
            (history_of_runs["second"], "proxy_list", "2026-11-20", "success"),
            (history_of_runs["failed"], "proxy_list", "2026-11-20", "failure"),
        ]
    )
    # Oldest first: the runs in the order they ran.
    order = [history_of_runs[name] for name in ("first", "second", "failed")]
    assert [r.time for r in records] == sorted(r.time for r in records)
    positions = [order.index(r.run_id) for r in records]
    assert positions == sorted(positions)
    by_run = {(r.run_id, r.asset): r for r in records}
    events = by_run[(history_of_runs["first"], "validation_events")]
    assert events.requested_by == "alice"
    assert events.job == "daily_export_job"
    manifest_path = recorded_runs.exports / "validation_events" / "dt=2026-11-19" / "_manifest.json"
    manifest = json.loads(manifest_path.read_bytes())
    [entry] = manifest["files"]
    assert events.uri == (manifest_path.parent / entry["path"]).resolve().as_uri()
    assert (events.rows, events.bytes, events.sha256) == (
        entry["rows"],
        entry["bytes"],
        entry["sha256"],
    )
    assert events.credential_policy == "redact"
    assert events.error == ""

    bob = by_run[(history_of_runs["second"], "proxy_list")]
    assert bob.requested_by == "bob"
    assert bob.job == "__ephemeral_asset_job__"  # no export/template tag: the job's name

    failure = by_run[(history_of_runs["failed"], "proxy_list")]
    assert failure.requested_by == "carol"
    assert failure.job == "backup_job"
    assert failure.error.startswith("ProxyWhirl database ")
    assert "does not exist: set PROXYWHIRL_DB" in failure.error
    assert (failure.uri, failure.rows, failure.bytes, failure.sha256) == ("", None, None, "")


def test_the_history_command(home: Path, history_of_runs: dict[str, str]) -> None:
    runner = CliRunner()
    env = {"DAGSTER_HOME": str(home)}
    result = runner.invoke(main, ["history", "--json"], env=env)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert len(lines) == 4
    assert all(list(line) == list(HISTORY_FIELDS) for line in lines)
    assert {line["run_id"] for line in lines if line["status"] == "failure"} == {
        history_of_runs["failed"]
    }

    only = runner.invoke(main, ["history", "--json", "--asset", "validation_events"], env=env)
    assert [json.loads(line)["asset"] for line in only.output.splitlines()] == ["validation_events"]

    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    later = runner.invoke(main, ["history", "--since", tomorrow], env=env)
    assert later.exit_code == 0
    assert "(no exports recorded)" in later.output

    table = runner.invoke(main, ["history"], env=env)
    header, *rows = table.output.splitlines()
    assert header.split()[:6] == ["time", "requested_by", "job", "status", "asset", "partition"]
    assert len(rows) == 4
    assert any("carol" in row and "failure" in row and "does not exist" in row for row in rows)

    bad = runner.invoke(main, ["history", "--since", "last week"], env=env)
    assert bad.exit_code == 2
    assert "'last week' is not a date: write YYYY-MM-DD" in bad.output


def test_history_needs_dagster_home() -> None:
    result = CliRunner().invoke(main, ["history"], env={"DAGSTER_HOME": ""})
    assert result.exit_code == 1
    assert "DAGSTER_HOME is not set" in result.output


def test_export_audit_log_writes_the_days_records(
    persistent_instance: DagsterInstance, history_of_runs: dict[str, str], tmp_path: Path
) -> None:
    audit = tmp_path / "audit"
    today = datetime.now(UTC).date().isoformat()
    result = materialize(
        [export_audit_log],
        partition_key=today,
        instance=persistent_instance,
        resources={"io_manager": ExportIOManager(store=ExportStore(destination=str(audit)))},
    )
    assert result.success
    path = audit / "export_audit_log" / f"dt={today}" / f"export_audit_log-{today}.csv.gz"
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(path.read_bytes()).decode())))
    assert list(rows[0]) == list(HISTORY_FIELDS)
    assert sorted((r["run_id"], r["asset"], r["status"]) for r in rows) == sorted(
        (r.run_id, r.asset, r.status)
        for r in export_history(persistent_instance)
        if r.asset != "export_audit_log"
    )
    assert len(rows) == 4
    assert {r["requested_by"] for r in rows} == {"alice", "bob", "carol"}


def test_the_cli_names_who_requested_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORT_REQUESTED_BY", "dana@example.test")
    assert requesting_user() == "dana@example.test"
    monkeypatch.setenv("EXPORT_REQUESTED_BY", " ")
    assert requesting_user() == getpass.getuser()
