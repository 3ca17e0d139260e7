"""A 30-day backfill of daily_export_job through Dagster, twice: complete and reproducible."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from export_assets.defs.exports import EXPORT_ASSETS
from export_assets.defs.exports.daily import DAYS_PER_BACKFILL_RUN
from export_assets.lib.exports.manifest import ExportManifest
from export_assets.lib.sample import write_sample_deployment

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("export-assets")
END = date(2026, 10, 31)
DAYS = 30


@pytest.mark.slow
def test_a_30_day_backfill_exports_every_asset_every_day_reproducibly(tmp_path: Path) -> None:
    sample = write_sample_deployment(
        tmp_path / "deployment",
        proxies=40,
        days=DAYS,
        end_date=END,
        validations_per_day=120,
        seed=3,
    )
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    exports = tmp_path / "exports"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PROXYWHIRL_DB": str(sample.database),
        "PROXYWHIRL_LOG_DIR": str(sample.log_dir),
        "PROXYWHIRL_CONFIG": str(sample.config_path),
        "EXPORT_DESTINATION": str(exports),
    }
    command = [str(CLI), "materialize", "--last-days", str(DAYS), "--end-date", END.isoformat()]

    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr
    days = {(END - timedelta(days=n)).isoformat() for n in range(DAYS)}
    names = {asset.key.path[-1] for asset in EXPORT_ASSETS}
    manifests = sorted(exports.rglob("_manifest.json"))
    assert len(manifests) == DAYS * len(names)
    published = {(m.parent.parent.name, m.parent.name.removeprefix("dt=")) for m in manifests}
    assert published == {(name, day) for name in names for day in days}
    data = {
        p: p.read_bytes() for p in exports.rglob("*") if p.is_file() and p.name != "_manifest.json"
    }
    assert len(data) == DAYS * len(names)
    for manifest_path in manifests:
        manifest = ExportManifest.from_json(manifest_path.read_bytes())
        assert [f.path for f in manifest.files] == [
            p.name for p in manifest_path.parent.iterdir() if p.name != "_manifest.json"
        ]

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr
    assert {p: p.read_bytes() for p in data} == data

    with DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(RunsFilter(job_name="daily_export_job"))
        # Up to DAYS_PER_BACKFILL_RUN days a run, as a UI backfill: 3 runs a pass.
        assert len(runs) == 2 * -(-DAYS // DAYS_PER_BACKFILL_RUN)
        assert {run.status for run in runs} == {DagsterRunStatus.SUCCESS}
        covered = set()
        for run in runs:
            start = date.fromisoformat(run.tags["dagster/asset_partition_range_start"])
            end = date.fromisoformat(run.tags["dagster/asset_partition_range_end"])
            covered |= {
                (start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)
            }
        assert covered == days
