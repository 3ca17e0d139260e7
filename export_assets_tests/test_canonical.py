"""The daily record is never replaced: templates and on-demand requests write elsewhere."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterInvalidConfigError, Definitions, materialize

from export_assets.defs.exports import EXPORT_ASSETS, proxy_list, validation_events
from export_assets.defs.exports.jobs import DAILY_JOBS
from export_assets.defs.exports.templates import REQUEST_ASSETS, TEMPLATE_ASSETS
from export_assets.defs.reports.jobs import weekly_report_job
from export_assets.lib.exports.destinations import LocalDestination
from export_assets.lib.exports.retention import published_partitions
from export_assets.lib.restore.pool import restore_pool
from export_assets.lib.sample import SampleDeployment
from export_assets_tests.conftest import (
    SAMPLE_END,
    export_resources,
    request_config,
    requested,
)

EXPORT_JOBS = [*DAILY_JOBS, weekly_report_job]

DAY = SAMPLE_END.isoformat()
ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
FILTERED = {
    "format": "parquet",
    "protocols": ["http", "socks5"],
    "countries": ["us", "de"],
    "min_success_rate": 0.5,
}


def digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_no_template_or_request_changes_the_daily_record(
    sample_deployment: SampleDeployment, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    resources = export_resources(
        sample_deployment.database,
        exports,
        log_dir=str(sample_deployment.log_dir),
        config_path=str(sample_deployment.config_path),
    )
    assert materialize(
        EXPORT_ASSETS, partition_key=DAY, instance=instance, resources=resources
    ).success
    records = {asset.key.path[-1]: digests(exports / asset.key.path[-1]) for asset in EXPORT_ASSETS}

    # An ad-hoc filtered Parquet export of the same asset and day.
    adhoc = materialize(
        [requested(proxy_list)],
        partition_key=DAY,
        instance=instance,
        resources=resources,
        run_config=request_config(proxy_list, FILTERED, request="us-de-good"),
    )
    assert adhoc.success
    # Every template job.
    defs = Definitions(
        assets=[*EXPORT_ASSETS, *TEMPLATE_ASSETS], jobs=EXPORT_JOBS, resources=resources
    )
    for job in ("backup_job", "analytics_job", "compliance_logs_job"):
        assert (
            defs.resolve_job_def(job)
            .execute_in_process(partition_key=DAY, instance=instance)
            .success
        ), job
    # Options on the daily record itself are refused before a run exists.
    runs = len(instance.get_runs())
    with pytest.raises(DagsterInvalidConfigError, match="unexpected config entries"):
        materialize(
            [proxy_list],
            partition_key=DAY,
            instance=instance,
            resources=resources,
            run_config={"ops": {"proxy_list": {"config": FILTERED}}},
        )
    assert len(instance.get_runs()) == runs

    for name, before in records.items():
        assert digests(exports / name) == before, name
    folder = exports / "requests" / "us-de-good" / "proxy_list" / f"dt={DAY}"
    manifest = json.loads((folder / "_manifest.json").read_bytes())
    assert manifest["asset"] == "requests/us-de-good/proxy_list"
    assert manifest["format"] == "parquet"
    assert (
        0
        < manifest["total_rows"]
        < json.loads((exports / "proxy_list" / f"dt={DAY}" / "_manifest.json").read_bytes())[
            "total_rows"
        ]
    )
    [materialization] = adhoc.asset_materializations_for_node("requests__proxy_list")
    assert materialization.metadata["request"].value == "us-de-good"
    # A copy restores as the domain it holds: the backup's pool, the request's Parquet.
    for copy in ("backup/proxy_list", "requests/us-de-good/proxy_list"):
        rows = json.loads((exports / copy / f"dt={DAY}" / "_manifest.json").read_bytes())
        target = tmp_path / copy.replace("/", "-") / "proxies.db"
        target.parent.mkdir()
        restored = restore_pool(exports / copy / f"dt={DAY}", target)
        assert len(restored.added) == rows["total_rows"], copy
    # Each copy is its own partition: its manifest, its retention.
    found, skipped = published_partitions(LocalDestination(exports))
    assert skipped == []
    assert {p.asset for p in found} == {
        *records,
        "requests/us-de-good/proxy_list",
        "backup/proxy_list",
        "backup/pool_config",
        "analytics/validation_events",
        "analytics/proxy_metrics",
        "compliance/proxy_logs",
    }


def test_the_daily_record_takes_no_run_config_and_a_request_needs_its_name(
    tmp_path: Path,
) -> None:
    for asset in EXPORT_ASSETS:
        assert asset.op.config_schema.as_field().config_type.fields == {}, asset.key  # type: ignore[attr-defined]
    for asset in REQUEST_ASSETS:
        fields = asset.op.config_schema.as_field().config_type.fields  # type: ignore[attr-defined]
        assert fields["request"].is_required, asset.key
    refused = materialize(
        [requested(validation_events)],
        partition_key=DAY,
        raise_on_error=False,
        resources=export_resources(tmp_path / "proxies.db", tmp_path / "exports"),
        run_config=request_config(validation_events, {}, request="../escape"),
    )
    [failure] = refused.get_step_failure_events()
    assert failure.step_failure_data.user_failure_data is not None
    assert failure.step_failure_data.user_failure_data.description == (
        "invalid run config (ValidationEventsRequest): request='../escape' is refused: The "
        "request's name: its files go to requests/{request}/validation_events/dt={day}/. "
        "Letters, digits, '_' and '-' (up to 64). Two runs of one name and day: the later "
        "replaces the earlier."
    )
    assert not (tmp_path / "exports").exists()


@pytest.mark.slow
def test_dagster_asset_materialize_with_options_leaves_the_daily_record(
    sample_deployment: SampleDeployment, tmp_path: Path
) -> None:
    """As the issue's bar: the canonical bytes after `dagster asset materialize --config-json`."""
    exports = tmp_path / "exports"
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "EXPORT_DESTINATION": str(exports),
        "PROXYWHIRL_DB": str(sample_deployment.database),
    }
    base = [
        str(BIN / "dagster"),
        "asset",
        "materialize",
        "-m",
        "export_assets.definitions",
        "--partition",
        DAY,
        "--select",
    ]
    first = subprocess.run([*base, "proxy_list"], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    before = digests(exports)
    options = json.dumps({"ops": {"proxy_list": {"config": FILTERED}}})
    refused = subprocess.run(
        [*base, "proxy_list", "--config-json", options], env=env, capture_output=True, text=True
    )
    assert refused.returncode != 0
    assert "unexpected config entries" in refused.stderr
    assert digests(exports) == before


def test_the_deep_re_read_covers_every_record_and_template() -> None:
    from export_assets.defs.exports.checks import VERIFIED_ASSETS
    from export_assets.defs.operations.export_audit_log import export_audit_log
    from export_assets.defs.reports import REPORT_ASSETS

    published = [*EXPORT_ASSETS, *REPORT_ASSETS, export_audit_log, *TEMPLATE_ASSETS]
    assert sorted(VERIFIED_ASSETS) == sorted(a.key.to_user_string() for a in published)
