"""pool_config: the config as of the run, keys sorted, credentials never exported."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import DagsterInstance, materialize

from export_assets.defs.exports import pool_config
from export_assets.defs.operations.failures import user_error
from export_assets.lib.exports.manifest import ExportManifest
from export_assets.lib.sample import SampleDeployment
from export_assets_tests.conftest import SAMPLE_END, configured, export_resources

PARTITION = SAMPLE_END.isoformat()

CONFIG = """
timeout = 30
rotation_strategy = "round-robin"
encrypt_credentials = false
started = 2026-11-01T03:04:05Z
notes = "see https://admin:hunter2@panel.example/x"

[[proxies]]
url = "http://198.51.100.1:8080"
username = "alice"
password = "s3cret-pass"

[[proxies]]
url = "http://198.51.100.2:8080"
username = "**********"
password = "**********"

[[proxies]]
url = "socks5://198.51.100.3:1080"

[data_storage]
pool_size = 5
"""


def export(
    config_path: Path, exports: Path, instance: DagsterInstance, settings: Mapping[str, Any]
) -> tuple[bool, ExportManifest | None, Path]:
    resources = export_resources(Path("unused.db"), exports, config_path=str(config_path))
    result = materialize(
        [configured(pool_config, settings)],
        partition_key=PARTITION,
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    folder = exports / "pool_config" / f"dt={PARTITION}"
    manifest_path = folder / "_manifest.json"
    manifest = (
        ExportManifest.from_json(manifest_path.read_bytes()) if manifest_path.exists() else None
    )
    return result.success, manifest, folder


@pytest.mark.parametrize("format", ["yaml", "json"])
def test_the_config_is_exported_sorted_without_credentials(
    tmp_path: Path, instance: DagsterInstance, format: str
) -> None:
    config_path = tmp_path / "proxywhirl.toml"
    config_path.write_text(CONFIG)
    run_config = {"format": format}
    ok, manifest, folder = export(config_path, tmp_path / "exports", instance, run_config)
    assert ok
    assert manifest is not None
    data = (folder / f"pool_config-{PARTITION}.{format}").read_bytes()
    document = yaml.safe_load(data) if format == "yaml" else json.loads(data)
    assert list(document) == sorted(document)
    assert document["timeout"] == 30
    assert document["notes"] == "see https://***:***@panel.example/x"
    assert document["proxies"] == [
        {"url": "http://198.51.100.1:8080", "credentials": "redacted"},
        {"url": "http://198.51.100.2:8080", "credentials": "not recoverable from the file"},
        {"url": "socks5://198.51.100.3:1080"},
    ]
    for secret in (b"alice", b"s3cret-pass", b"hunter2", b"**********"):
        assert secret not in data
    assert manifest.format == format
    assert manifest.total_rows == 1
    assert manifest.source["config_sha256"] == hashlib.sha256(config_path.read_bytes()).hexdigest()
    assert manifest.source["credentials_not_recoverable"] == ["http://198.51.100.2:8080"]
    assert manifest.source["credentials_redacted"] == 1

    again_ok, _, _ = export(config_path, tmp_path / "exports", instance, run_config)
    assert again_ok
    assert (folder / f"pool_config-{PARTITION}.{format}").read_bytes() == data


def test_a_pyproject_table_is_read(tmp_path: Path, instance: DagsterInstance) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n\n[tool.proxywhirl]\ntimeout = 12\n')
    ok, manifest, folder = export(pyproject, tmp_path / "exports", instance, {})
    assert ok
    assert yaml.safe_load((folder / f"pool_config-{PARTITION}.yaml").read_bytes()) == {
        "timeout": 12
    }
    assert manifest is not None
    assert manifest.source["config_table"] == "tool.proxywhirl"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("absent.toml", None, "absent.toml does not exist: set PROXYWHIRL_CONFIG"),
        ("proxywhirl.toml", "timeout = = 3", "is not valid TOML"),
        ("pyproject.toml", '[project]\nname = "x"\n', "has no [tool.proxywhirl] table"),
    ],
)
def test_bad_config_files_are_named(
    tmp_path: Path, instance: DagsterInstance, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    resources = export_resources(Path("unused.db"), tmp_path / "exports", config_path=str(path))
    result = materialize(
        [pool_config],
        partition_key=PARTITION,
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert error is not None
    assert message in user_error(error).message
    assert not (tmp_path / "exports").exists()


def test_the_sample_config_exports_and_passes_its_check(
    sample_deployment: SampleDeployment, tmp_path: Path, instance: DagsterInstance
) -> None:
    ok, manifest, folder = export(sample_deployment.config_path, tmp_path / "exports", instance, {})
    assert ok
    assert manifest is not None
    text = (folder / f"pool_config-{PARTITION}.yaml").read_text()
    assert "gAAAAA" not in text  # no Fernet token of a credential
    assert "not recoverable from the file" in text
