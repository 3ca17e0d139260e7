"""The code location loads the way Dagster's own tools load it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = Path(sys.executable).with_name("dagster")


def test_dagster_validates_the_workspace(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [str(DAGSTER), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_malformed_partition_start_is_named(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "EXPORT_PARTITION_START": "01/02/2025"}
    result = subprocess.run(
        [sys.executable, "-c", "import export_assets.definitions"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "EXPORT_PARTITION_START='01/02/2025' is not a date: write it as YYYY-MM-DD" in (
        result.stderr
    )


def test_pyproject_leaves_the_workspace_as_the_one_entry_point() -> None:
    assert "[tool.dagster]" not in (ROOT / "pyproject.toml").read_text()
