"""The README's path, end to end: sample data, then batch materialization through Dagster."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from export_assets.cli import main
from export_assets.defs.exports import EXPORT_ASSETS
from export_assets.lib.sample import SampleDeployment
from export_assets_tests.conftest import proxy_credentials

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("export-assets")


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def dagster_home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


@pytest.mark.slow
def test_sample_data_then_materialize_twice_is_reproducible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    deployment = tmp_path / "deployment"
    exports = tmp_path / "out"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PROXYWHIRL_DB": str(deployment / "proxies.db"),
        "EXPORT_DESTINATION": str(exports),
    }
    made = cli(
        "sample-data",
        "--out",
        str(deployment),
        "--proxies",
        "40",
        "--days",
        "4",
        "--end-date",
        "2026-11-10",
        "--validations-per-day",
        "300",
        env=env,
        cwd=ROOT,
    )
    assert made.returncode == 0, made.stderr
    assert "40 proxies" in made.stdout

    database = deployment / "proxies.db"
    database_digest = hashlib.sha256(database.read_bytes()).hexdigest()

    first = cli("materialize", "--last-days", "3", "--end-date", "2026-11-10", env=env, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    table = first.stdout.splitlines()
    assert table[0].split() == ["partition", "asset", "path", "rows", "bytes"]
    names = [asset.key.path[-1] for asset in EXPORT_ASSETS]
    days = ["2026-11-08", "2026-11-09", "2026-11-10"]
    listed = [tuple(line.split()[:2]) for line in table[1:]]
    assert sorted(listed) == sorted((day, name) for day in days for name in names)
    for line in table[1:]:
        partition, asset, path_text, rows, size = line.split()
        path = Path(path_text)
        assert path.parent == exports / asset / f"dt={partition}"
        assert path.name.startswith(f"{asset}-{partition}.")
        assert int(size.replace(",", "")) == path.stat().st_size
        manifest = json.loads((path.parent / "_manifest.json").read_bytes())
        assert int(rows.replace(",", "")) == manifest["total_rows"]
    data_files = sorted(p for p in exports.rglob("*") if p.is_file() and p.name != "_manifest.json")
    assert len(data_files) == len(days) * len(names)
    before = {p: p.read_bytes() for p in data_files}

    again = cli("materialize", "--last-days", "3", "--end-date", "2026-11-10", env=env, cwd=ROOT)
    assert again.returncode == 0, again.stderr
    assert {p: p.read_bytes() for p in data_files} == before

    assert hashlib.sha256(database.read_bytes()).hexdigest() == database_digest
    secrets = proxy_credentials(database, deployment / ".env")
    assert len(secrets) >= 2
    for path in exports.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode()
            leaked = [secret for secret in secrets if secret in text]
            assert not leaked, f"{path} holds a proxy credential"

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as instance:
        runs = instance.get_runs(RunsFilter(job_name="daily_export_job"))
        assert len(runs) == 2  # one run of the 3 days a pass, as a UI backfill
        assert {run.status for run in runs} == {DagsterRunStatus.SUCCESS}
        assert {
            (
                run.tags["dagster/asset_partition_range_start"],
                run.tags["dagster/asset_partition_range_end"],
            )
            for run in runs
        } == {("2026-11-08", "2026-11-10")}
        assert all(run.tags.get("export/requested_by") for run in runs)
        assert {run.tags.get("export/template") for run in runs} == {"daily_export_job"}

    # An export template through the CLI writes in the template's own formats.
    analytics = cli(
        "materialize",
        "--job",
        "analytics_job",
        "--last-days",
        "1",
        "--end-date",
        "2026-11-10",
        env=env,
        cwd=ROOT,
    )
    assert analytics.returncode == 0, analytics.stderr
    for asset in ("validation_events", "proxy_metrics"):
        folder = exports / "analytics" / asset / "dt=2026-11-10"
        assert [p.name for p in folder.iterdir() if p.name != "_manifest.json"] == [
            f"{asset}-2026-11-10.parquet"
        ]


BROKEN_DATABASES = {
    "missing": (
        None,
        "ProxyWhirl database {db} does not exist: set PROXYWHIRL_DB to ProxyWhirl's proxies.db "
        "(or write a sample with `export-assets sample-data --out DIR`)",
    ),
    "not sqlite": (
        b"name,url\nnot,a database\n" * 100,
        "{db} is not a readable SQLite database (file is not a database): PROXYWHIRL_DB must "
        "point at ProxyWhirl's proxies.db",
    ),
    "empty": (
        b"",
        "ProxyWhirl database {db} is an empty file (0 bytes): set PROXYWHIRL_DB to "
        "ProxyWhirl's proxies.db (or write a sample with `export-assets sample-data --out DIR`)",
    ),
}


@pytest.mark.parametrize("broken", BROKEN_DATABASES)
def test_materialize_on_a_broken_database_says_so_in_one_line(
    broken: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content, message = BROKEN_DATABASES[broken]
    database = tmp_path / "proxies.db"
    if content is not None:
        database.write_bytes(content)
    home = dagster_home(tmp_path)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PROXYWHIRL_DB": str(database),
        "EXPORT_DESTINATION": str(tmp_path / "out"),
    }
    result = CliRunner().invoke(main, ["materialize", "--last-days", "3"], env=env)
    output = result.stdout + result.stderr
    assert result.exit_code == 1
    assert output.splitlines() == [f"Error: nothing was exported: {message.format(db=database)}"]
    assert "Traceback" not in output
    assert "proxywhirl.toml" not in output  # the database is named, not a path derived from it
    # Nothing published, nothing created, no run started.
    assert not (tmp_path / "out").exists()
    assert (database.read_bytes() if database.exists() else None) == content
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as instance:
        assert instance.get_runs() == []


@pytest.mark.slow
def test_a_failed_step_is_said_once_and_its_traceback_only_with_verbose(
    tmp_path: Path,
) -> None:
    deployment = tmp_path / "deployment"
    exports = tmp_path / "out"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home(tmp_path)),
        "PROXYWHIRL_DB": str(deployment / "proxies.db"),
        "EXPORT_DESTINATION": str(exports),
    }
    made = cli(
        "sample-data",
        "--out",
        str(deployment),
        "--proxies",
        "20",
        "--days",
        "2",
        "--end-date",
        "2026-11-10",
        "--validations-per-day",
        "50",
        env=env,
        cwd=ROOT,
    )
    assert made.returncode == 0, made.stderr
    config = deployment / "proxywhirl.toml"
    config.unlink()
    expected = (
        f"  pool_config: ProxyWhirl config {config} does not exist: set PROXYWHIRL_CONFIG to "
        "proxywhirl.toml or to a pyproject.toml with a [tool.proxywhirl] table"
    )

    quiet = cli("materialize", "--last-days", "1", "--end-date", "2026-11-10", env=env, cwd=ROOT)
    assert quiet.returncode == 1
    errors = quiet.stderr[quiet.stderr.index("Error: ") :].splitlines()
    assert errors[0].startswith("Error: daily_export_job failed for 2026-11-10 (run ")
    assert errors[1:] == [
        expected,
        "Run again with --verbose for Dagster's log and the tracebacks.",
    ]
    assert "Traceback" not in quiet.stderr
    assert "Stack Trace" not in quiet.stderr
    assert quiet.stderr.count("does not exist") == 1
    assert not (exports / "pool_config").exists()  # the failed asset published nothing
    assert (exports / "proxy_list" / "dt=2026-11-10" / "_manifest.json").is_file()

    verbose = cli(
        "materialize",
        "--last-days",
        "1",
        "--end-date",
        "2026-11-10",
        "--verbose",
        env=env,
        cwd=ROOT,
    )
    assert verbose.returncode == 1
    assert "Stack Trace" in verbose.stderr  # Dagster's own log, with the step's traceback
    assert expected in verbose.stderr.splitlines()


def test_an_unknown_job_is_named_with_the_valid_ones(tmp_path: Path) -> None:
    env = {"DAGSTER_HOME": str(dagster_home(tmp_path))}
    result = CliRunner().invoke(main, ["materialize", "--job", "daily_export_jbo"], env=env)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Error: unknown job 'daily_export_jbo' (did you mean daily_export_job?); valid jobs: "
        "analytics_job, audit_log_job, backup_job, compliance_logs_job, daily_export_job, "
        "weekly_report_job"
    ]
    assert result.exception is not None
    assert "Traceback" not in result.output

    not_daily = CliRunner().invoke(main, ["materialize", "--job", "retention_job"], env=env)
    assert not_daily.exit_code == 1
    assert not_daily.output.startswith(
        "Error: retention_job is not partitioned by day, so it has no days to materialize: "
        "launch it from the Dagster UI or with `dagster job launch -w workspace.yaml -j "
        "retention_job`; daily jobs: analytics_job, "
    )
    assert not (tmp_path / "dagster_home" / "history").exists()  # no run was created


def test_an_unknown_asset_is_named_with_the_valid_ones(tmp_path: Path) -> None:
    env = {"DAGSTER_HOME": str(dagster_home(tmp_path)), "EXPORT_DESTINATION": str(tmp_path)}
    valid = (
        "analytics/proxy_metrics, analytics/validation_events, analytics_workbook, "
        "backup/pool_config, backup/proxy_list, compliance/proxy_logs, export_audit_log, "
        "health_report, pool_config, proxy_changes, proxy_list, proxy_logs, proxy_metrics, "
        "validation_events, "
    )
    link = CliRunner().invoke(main, ["link", "proxy_lst", "2026-11-23"], env=env)
    assert link.exit_code == 1
    assert link.output.splitlines() == [
        f"Error: unknown asset 'proxy_lst' (did you mean proxy_list?); valid assets: {valid}"
        "requests/{request}/{asset}"
    ]
    history = CliRunner().invoke(main, ["history", "--asset", "pool_cnfig"], env=env)
    assert history.exit_code == 1
    assert history.output.splitlines() == [
        f"Error: unknown asset 'pool_cnfig' (did you mean pool_config?); valid assets: {valid}"
        "requests/{asset}"
    ]
    # A request's folder is an asset's: not published, rather than unknown.
    request = CliRunner().invoke(
        main, ["link", "requests/us-only/proxy_list", "2026-11-23"], env=env
    )
    assert request.exit_code == 1
    assert "requests/us-only/proxy_list 2026-11-23 is not published" in request.output
    assert list(tmp_path.iterdir()) == [tmp_path / "dagster_home"]


def test_sample_data_refuses_to_overwrite_a_deployment(tmp_path: Path) -> None:
    target = tmp_path / "deployment"
    target.mkdir()
    (target / "proxies.db").write_bytes(b"precious")
    result = CliRunner().invoke(main, ["sample-data", "--out", str(target)])
    assert result.exit_code != 0
    assert "proxies.db" in result.stderr
    assert (target / "proxies.db").read_bytes() == b"precious"


def test_days_before_the_first_partition_are_refused_naming_the_setting(
    sample_deployment: SampleDeployment, tmp_path: Path
) -> None:
    env = {
        "DAGSTER_HOME": str(dagster_home(tmp_path)),
        "PROXYWHIRL_DB": str(sample_deployment.database),
        "EXPORT_DESTINATION": str(tmp_path / "out"),
        "EXPORT_PARTITION_START": "2026-11-13",
    }
    days = ["materialize", "--last-days", "30", "--end-date", "2026-11-21"]
    result = CliRunner().invoke(main, days, env=env)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Error: nothing was exported: 2026-10-23 is before the first partition, 2026-11-13 "
        "(EXPORT_PARTITION_START): ask for --last-days 9 or fewer, or set "
        "EXPORT_PARTITION_START earlier"
    ]
    assert not (tmp_path / "out").exists()
