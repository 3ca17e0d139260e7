"""The export templates run with their own defaults; a backfill run covers a range of days."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import BackfillPolicy, DagsterInstance, Definitions

from export_assets.defs.exports import EXPORT_ASSETS
from export_assets.defs.exports.daily import DAYS_PER_BACKFILL_RUN, INTACT
from export_assets.defs.exports.jobs import DAILY_JOBS
from export_assets.defs.exports.templates import TEMPLATE_ASSETS
from export_assets.defs.reports.jobs import weekly_report_job
from export_assets.lib.sample import SampleDeployment
from export_assets_tests.conftest import SAMPLE_END, export_resources

EXPORT_JOBS = [*DAILY_JOBS, weekly_report_job]

PARTITION = SAMPLE_END.isoformat()


def templates(sample: SampleDeployment, database: Path, exports: Path) -> Definitions:
    """The daily records, the templates and their jobs, on ``database``."""
    return Definitions(
        assets=[*EXPORT_ASSETS, *TEMPLATE_ASSETS],
        jobs=EXPORT_JOBS,
        resources=export_resources(
            database, exports, log_dir=str(sample.log_dir), config_path=str(sample.config_path)
        ),
    )


@pytest.mark.parametrize(
    ("job", "files"),
    [
        ("backup_job", {"backup/proxy_list": ".json.gz", "backup/pool_config": ".json"}),
        (
            "analytics_job",
            {
                "analytics/validation_events": ".parquet",
                "analytics/proxy_metrics": ".parquet",
            },
        ),
        ("compliance_logs_job", {"compliance/proxy_logs": ".jsonl.gz"}),
    ],
)
def test_a_template_exports_its_assets_in_its_format(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    job: str,
    files: dict[str, str],
) -> None:
    exports = tmp_path / "exports"
    defs = templates(sample_deployment, sample_deployment.database, exports)
    result = defs.resolve_job_def(job).execute_in_process(
        partition_key=PARTITION, instance=instance
    )
    assert result.success
    written = {
        p.relative_to(exports).as_posix()
        for p in exports.rglob("*")
        if p.is_file() and p.name != "_manifest.json"
    }
    assert written == {
        f"{asset}/dt={PARTITION}/{asset.split('/')[-1]}-{PARTITION}{extension}"
        for asset, extension in files.items()
    }
    intact = [e for e in result.get_asset_check_evaluations() if e.check_name == INTACT]
    assert len(intact) == len(files)
    assert all(evaluation.passed and evaluation.partition == PARTITION for evaluation in intact)


def test_a_backfill_run_covers_a_range_of_days() -> None:
    for asset in EXPORT_ASSETS:
        assert asset.backfill_policy == BackfillPolicy.multi_run(DAYS_PER_BACKFILL_RUN), asset.key


def test_a_backup_that_cannot_read_the_pool_publishes_nothing(
    sample_deployment: SampleDeployment, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    defs = templates(sample_deployment, tmp_path / "missing.db", exports)
    result = defs.resolve_job_def("backup_job").execute_in_process(
        partition_key=PARTITION, instance=instance, raise_on_error=False
    )
    assert not result.success
    # The pool failed; the config, which follows it in a backup, never ran.
    assert [e.step_key for e in result.get_step_failure_events()] == ["backup__proxy_list"]
    assert "backup__pool_config" not in {
        e.step_key for e in result.all_events if e.event_type_value == "STEP_START"
    }
    assert not exports.exists() or not list(exports.rglob("*.json*"))
