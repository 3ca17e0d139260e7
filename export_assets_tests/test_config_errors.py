"""Run config mistakes: refused at launch where Dagster's schema can, else a final Failure.

Dagster's launchpad checks a run config against the config schema (types, enums) before a
run starts; pydantic's constraints and validators run when the step builds the ``Config``.
Either way the mistake fails at once (never retried with backoff) with one line naming the
option, its value and the fix, and nothing is published.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pydantic
import pytest
from dagster import (
    AssetsDefinition,
    DagsterEventType,
    DagsterInstance,
    DagsterInvalidConfigError,
    ExecuteInProcessResult,
    Failure,
    materialize,
)

from export_assets.defs.exports.config import DocumentConfig, ExportConfig, RunConfigError
from export_assets.defs.exports.pool_config import pool_config
from export_assets.defs.exports.proxy_changes import proxy_changes
from export_assets.defs.exports.proxy_list import proxy_list
from export_assets.defs.exports.validation_events import validation_events
from export_assets.lib.exports.export import CompressionSetting, Format, ParquetCompression
from export_assets.lib.sample import SampleDeployment
from export_assets_tests.conftest import export_resources, request_config, requested

DAY = "2026-11-19"


def run(
    asset: AssetsDefinition,
    config: dict[str, Any],
    sample: SampleDeployment,
    exports: Path,
    instance: DagsterInstance,
) -> ExecuteInProcessResult:
    # Options are run config of the on-demand asset only (the daily record's are fixed).
    return materialize(
        [requested(asset)],
        partition_key=DAY,
        instance=instance,
        resources=export_resources(
            sample.database,
            exports,
            log_dir=str(sample.log_dir),
            config_path=str(sample.config_path),
        ),
        run_config=request_config(asset, config),
        raise_on_error=False,
    )


def final_failure(result: ExecuteInProcessResult) -> str:
    """The one failed step's Failure description; asserts it was not retried."""
    assert not result.success
    retried = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert retried == []
    (failure,) = result.get_step_failure_events()
    data = failure.step_failure_data
    assert data.user_failure_data is not None  # a Failure: the UI shows its description
    assert data.user_failure_data.description is not None
    return data.user_failure_data.description


@pytest.mark.parametrize(
    ("asset", "config", "message"),
    [
        (
            validation_events,
            {"error_types": []},
            "invalid run config (ValidationEventsRequest): error_types=[]: an empty list "
            "matches nothing: list values, or leave it unset",
        ),
        (
            proxy_changes,
            {"changes": []},
            "invalid run config (ProxyChangesRequest): changes=[]: changes is empty: list the "
            "kinds to export (added, removed, status_changed), or leave it unset for all",
        ),
        (
            proxy_list,
            {"gzip_level": 42},
            "invalid run config (ProxyListRequest): gzip_level=42 is out of range: use a value "
            "from 1 to 9",
        ),
        (
            proxy_list,
            {"zstd_level": 0, "min_success_rate": 1.5},
            "invalid run config (ProxyListRequest): zstd_level=0 is out of range: use a value "
            "from 1 to 22; min_success_rate=1.5 is out of range: use a value from 0.0 to 1.0",
        ),
        (
            proxy_list,
            {"format": "parquet", "compression": "gzip"},
            "invalid run config (ProxyListRequest): parquet compresses internally "
            "(parquet_compression); set compression to none (or leave it unset), not 'gzip'",
        ),
        (
            proxy_list,
            {"fields": ["url", "url"]},
            "invalid run config (ProxyListRequest): fields=['url', 'url']: fields lists 'url' "
            "twice: ['url', 'url']",
        ),
        (
            pool_config,
            {"gzip_level": 10, "compression": "gzip"},
            "invalid run config (PoolConfigRequest): gzip_level=10 is out of range: use a value "
            "from 1 to 9",
        ),
    ],
    ids=[
        "empty-error-types",
        "empty-changes",
        "gzip-42",
        "two-ranges",
        "codec",
        "fields-twice",
        "document-level",
    ],
)
def test_a_config_mistake_fails_at_once_with_one_line_and_publishes_nothing(
    asset: AssetsDefinition,
    config: dict[str, Any],
    message: str,
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
) -> None:
    # The export policy retries with 10 s, 20 s, 40 s of backoff: a retried config error
    # would take over a minute; this one fails in its first attempt.
    result = run(asset, config, sample_deployment, tmp_path / "exports", instance)
    assert final_failure(result) == message
    assert not (tmp_path / "exports").exists()


def test_an_unknown_field_fails_without_retry_naming_the_valid_fields(
    sample_deployment: SampleDeployment, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    result = run(proxy_list, {"fields": ["url", "urll"]}, sample_deployment, exports, instance)
    description = final_failure(result)
    assert description.startswith(
        "invalid run config (ProxyListRequest): fields=['url', 'urll']: no field 'urll'; "
        "valid fields: url, protocol, "
    )
    assert "health_status" in description
    assert not list(exports.rglob("_manifest.json")) if exports.exists() else True


def test_a_value_outside_an_enum_is_refused_at_launch_listing_the_valid_values(
    sample_deployment: SampleDeployment, tmp_path: Path, instance: DagsterInstance
) -> None:
    cases = {
        "format": ("pdf", "Literal['csv', 'jsonl', 'json', 'txt', 'parquet', 'xlsx'] got pdf"),
        "compression": ("bz2", "Literal['auto', 'none', 'gzip', 'zstd', 'zip'] got bz2"),
        "parquet_compression": ("lz4", "Literal['zstd', 'snappy', 'gzip', 'none'] got lz4"),
    }
    for option, (value, listed) in cases.items():
        with pytest.raises(DagsterInvalidConfigError) as refused:
            run(proxy_list, {option: value}, sample_deployment, tmp_path / "out", instance)
        assert f"config:{option} not in enum type {listed}" in str(refused.value)
    assert instance.get_runs() == []  # refused before a run existed
    assert not (tmp_path / "out").exists()


def test_every_enum_like_option_lists_its_values_in_its_description() -> None:
    cases: list[tuple[type[pydantic.BaseModel], str, tuple[str, ...]]] = [
        (ExportConfig, "format", get_args(Format)),
        (ExportConfig, "compression", get_args(CompressionSetting)),
        (ExportConfig, "parquet_compression", get_args(ParquetCompression)),
        (DocumentConfig, "format", ("yaml", "json")),
        (DocumentConfig, "compression", ("none", "gzip", "zstd", "zip")),
    ]
    for config, option, values in cases:
        description = config.model_fields[option].description or ""
        assert all(value in description for value in values), (config, option)
    for config in (ExportConfig, DocumentConfig):
        level = config.model_fields["gzip_level"].description or ""
        assert "from 1 (fast) to 9 (small)" in level


def test_code_that_builds_a_config_still_gets_a_validation_error() -> None:
    with pytest.raises(pydantic.ValidationError) as refused:
        ExportConfig(gzip_level=42)
    assert isinstance(refused.value, RunConfigError)
    assert isinstance(refused.value, Failure)
    assert refused.value.allow_retries is False
    assert str(refused.value) == (
        "invalid run config (ExportConfig): gzip_level=42 is out of range: use a value from 1 to 9"
    )
    # The old spelling of "the format's default codec" still works from Python.
    assert ExportConfig(compression=None).options().compression == "gzip"  # type: ignore[arg-type]
    assert ExportConfig(format="parquet").options().compression == "none"


def test_a_config_that_names_its_columns_refuses_an_unknown_field_when_built() -> None:
    class PoolFieldsConfig(ExportConfig):
        field_names = ("url", "protocol", "host")

    assert PoolFieldsConfig(fields=["host", "url"]).options().fields == ("host", "url")
    with pytest.raises(pydantic.ValidationError) as refused:
        PoolFieldsConfig(fields=["url", "hots"])
    assert str(refused.value) == (
        "invalid run config (PoolFieldsConfig): fields=['url', 'hots']: no field 'hots'; "
        "valid fields: url, protocol, host"
    )
