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

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.instance.ref import InstanceRef

from export_assets.assets import EXPORT_ASSETS
from export_assets_tests.conftest import proxy_credentials

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("export-assets")


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip


def test_sample_data_then_materialize_twice_is_reproducible(tmp_path: Path) -> None:
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
        "sample-data", "--out", str(deployment), "--proxies", "40", "--days", "4",
        "--end-date", "2026-11-10", "--validations-per-day", "300", env=env, cwd=ROOT,
    )  # fmt: skip
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

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        runs = instance.get_runs(RunsFilter(job_name="daily_export_job"))
        assert len(runs) == 6
        assert {run.status for run in runs} == {DagsterRunStatus.SUCCESS}
        assert {run.tags["dagster/partition"] for run in runs} == {
            "2026-11-08", "2026-11-09", "2026-11-10",
        }  # fmt: skip
        assert all(run.tags.get("export/requested_by") for run in runs)
        assert {run.tags.get("export/template") for run in runs} == {"daily_export_job"}

    # An export template through the CLI writes in the template's own formats.
    analytics = cli(
        "materialize", "--job", "analytics_job", "--last-days", "1", "--end-date", "2026-11-10",
        env=env, cwd=ROOT,
    )  # fmt: skip
    assert analytics.returncode == 0, analytics.stderr
    for asset in ("validation_events", "proxy_metrics"):
        folder = exports / asset / "dt=2026-11-10"
        assert [p.name for p in folder.iterdir() if p.name != "_manifest.json"] == [
            f"{asset}-2026-11-10.parquet"
        ]


def test_materialize_on_a_missing_database_fails_clearly(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PROXYWHIRL_DB": str(tmp_path / "absent.db"),
        "EXPORT_DESTINATION": str(tmp_path / "out"),
    }
    result = cli("materialize", "--last-days", "1", env=env, cwd=ROOT)
    assert result.returncode == 1
    assert "SourceError" in result.stderr
    assert "absent.db does not exist: set PROXYWHIRL_DB" in result.stderr
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "absent.db").exists()


def test_sample_data_refuses_to_overwrite_a_deployment(tmp_path: Path) -> None:
    target = tmp_path / "deployment"
    target.mkdir()
    (target / "proxies.db").write_bytes(b"precious")
    result = cli("sample-data", "--out", str(target), env=dict(os.environ), cwd=ROOT)
    assert result.returncode != 0
    assert "proxies.db" in result.stderr
    assert (target / "proxies.db").read_bytes() == b"precious"
