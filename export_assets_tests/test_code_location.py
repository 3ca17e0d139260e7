"""The code location loads the way Dagster's own tools load it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, Definitions

from export_assets.definitions import defs

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = Path(sys.executable).with_name("dagster")


def test_the_code_location_is_loadable_in_process() -> None:
    """What `dagster definitions validate` checks, without a process (the real command is
    the slow test below)."""
    Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    # Each domain contributed: the merge kept every asset, job, schedule and sensor.
    assert {"proxy_list", "health_report", "export_audit_log"} <= {
        key.path[-1] for key in graph.get_all_asset_keys()
    }
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert {"daily_export_job", "weekly_report_job", "retention_job", "restore_pool_job"} <= jobs
    assert defs.resolve_schedule_def("daily_export_schedule")
    assert defs.resolve_sensor_def("dead_run_sweep_sensor")


def test_proxy_list_reads_from_a_source_asset_that_cannot_be_materialized() -> None:
    graph = defs.resolve_asset_graph()
    parents = graph.get(AssetKey("proxy_list")).parent_keys
    assert parents == {AssetKey(["proxywhirl", "database"])}
    source = graph.get(AssetKey(["proxywhirl", "database"]))
    assert not source.is_materializable
    assert source.is_observable


def test_the_package_shows_definitions_apart_from_library_code() -> None:
    """At most six modules at the top; what Dagster loads in defs/, the rest in lib/ (that
    lib/ imports no Dagster is test_imports.py's)."""
    package = ROOT / "export_assets"
    modules = sorted(path.name for path in package.glob("*.py"))
    assert len(modules) <= 6, modules
    packages = sorted(path.name for path in package.iterdir() if (path / "__init__.py").exists())
    assert packages == ["cli", "defs", "lib"]
    for domain in ("exports", "reports", "operations"):
        assert (package / "defs" / domain / "definitions.py").is_file(), domain


@pytest.mark.slow
def test_dagster_validates_the_workspace(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [str(DAGSTER), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_malformed_partition_start_is_named(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "EXPORT_PARTITION_START": "01/02/2025"}
    result = subprocess.run(
        [sys.executable, "-c", "import export_assets.definitions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "EXPORT_PARTITION_START='01/02/2025' is not a date: write it as YYYY-MM-DD" in (
        result.stderr
    )


def test_pyproject_leaves_the_workspace_as_the_one_entry_point() -> None:
    assert "[tool.dagster]" not in (ROOT / "pyproject.toml").read_text()
