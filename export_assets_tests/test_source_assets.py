"""The ProxyWhirl deployment in the asset graph: observed upstream of every export."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
    define_asset_job,
)

from export_assets.defs.exports import EXPORT_ASSETS
from export_assets.defs.exports.templates import REQUEST_ASSETS, TEMPLATE_ASSETS
from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.defs.source import CONFIG, DATABASE, LOGS, proxywhirl_deployment
from export_assets.lib.sample import SampleDeployment
from export_assets_tests.test_sensors import add_validation


def observe(source: ProxyWhirlSource, instance: DagsterInstance) -> ExecuteInProcessResult:
    """Run an observation of the deployment, as the UI's "Observe sources" does."""
    defs = Definitions(
        assets=[proxywhirl_deployment],
        jobs=[define_asset_job("observe_deployment", [DATABASE, LOGS, CONFIG])],
        resources={"proxywhirl": source},
    )
    return defs.resolve_job_def("observe_deployment").execute_in_process(instance=instance)


def observed(deployment: Path, instance: DagsterInstance) -> dict[AssetKey, str]:
    source = ProxyWhirlSource(
        database=str(deployment / "proxies.db"),
        log_dir=str(deployment / "logs"),
        config_path=str(deployment / "proxywhirl.toml"),
    )
    result = observe(source, instance)
    assert result.success
    observations = [
        e.asset_observation_data.asset_observation
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]
    return {o.asset_key: str(o.data_version) for o in observations}


def test_a_change_of_the_database_logs_or_config_is_a_new_version(
    sample_deployment: SampleDeployment, tmp_path: Path, instance: DagsterInstance
) -> None:
    deployment = tmp_path / "deployment"
    shutil.copytree(sample_deployment.database.parent, deployment)
    first = observed(deployment, instance)
    assert set(first) == {DATABASE, LOGS, CONFIG}
    assert observed(deployment, instance) == first  # a quiet deployment keeps its versions

    new_id = add_validation(deployment / "proxies.db")
    (deployment / "logs" / "proxywhirl.log").open("a").write("{}\n")
    config = deployment / "proxywhirl.toml"
    config.write_text(config.read_text() + "\n# edited\n")
    second = observed(deployment, instance)
    assert f"validations<={new_id};" in second[DATABASE]
    assert all(second[key] != first[key] for key in (DATABASE, LOGS, CONFIG))


def test_observing_a_missing_database_names_the_variable(
    tmp_path: Path, instance: DagsterInstance
) -> None:
    source = ProxyWhirlSource(database=str(tmp_path / "nowhere.db"))
    with pytest.raises(Exception, match=r"nowhere.db does not exist: set PROXYWHIRL_DB"):
        observe(source, instance)
    assert not (tmp_path / "nowhere.db").exists()


def test_observing_a_foreign_file_names_it_and_leaves_it_as_it_was(
    tmp_path: Path, instance: DagsterInstance
) -> None:
    foreign = tmp_path / "notes.db"
    foreign.write_bytes(b"not a database, just notes\n" * 100)
    source = ProxyWhirlSource(database=str(foreign))
    with pytest.raises(Exception, match=r"notes.db .*is PROXYWHIRL_DB a ProxyWhirl database"):
        observe(source, instance)
    assert foreign.read_bytes() == b"not a database, just notes\n" * 100


def test_every_export_is_downstream_of_its_source_and_owned() -> None:
    upstream = {asset.key.path[-1]: set(asset.asset_deps[asset.key]) for asset in EXPORT_ASSETS}
    assert upstream["proxy_list"] == {DATABASE}
    assert upstream["validation_events"] == {DATABASE}
    assert upstream["proxy_logs"] == {LOGS}
    assert upstream["pool_config"] == {CONFIG}
    for asset in [*EXPORT_ASSETS, *TEMPLATE_ASSETS, *REQUEST_ASSETS]:
        spec = next(iter(asset.specs))
        assert spec.owners == ["team:proxywhirl-operations"], asset.key
        assert spec.code_version, asset.key
        assert spec.tags["proxywhirl/domain"] == asset.key.path[-1]
    assert {next(iter(a.specs)).tags["proxywhirl/copy"] for a in TEMPLATE_ASSETS} == {"template"}
    assert {next(iter(a.specs)).tags["proxywhirl/copy"] for a in REQUEST_ASSETS} == {"request"}


def test_a_daily_record_not_written_by_its_deadline_is_overdue() -> None:
    from export_assets.defs.reports import REPORT_ASSETS

    for asset in EXPORT_ASSETS:
        policy = next(iter(asset.specs)).freshness_policy
        assert policy is not None, asset.key
        assert (policy.deadline_cron, policy.lower_bound_delta.total_seconds()) == (  # type: ignore[attr-defined]
            "0 3 * * *",
            3 * 3600,
        )
    for asset in REPORT_ASSETS:
        policy = next(iter(asset.specs)).freshness_policy
        assert policy is not None
        assert policy.deadline_cron == "0 3 * * 1"  # type: ignore[attr-defined]
    # Copies are written on demand: no deadline.
    for asset in [*TEMPLATE_ASSETS, *REQUEST_ASSETS]:
        assert next(iter(asset.specs)).freshness_policy is None, asset.key
