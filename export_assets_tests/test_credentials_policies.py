"""Credential policies on proxy_list and pool_config: redact, encrypt, reference."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from dagster import DagsterInstance, materialize

from export_assets.defs.exports import pool_config, proxy_list
from export_assets.defs.operations.failures import error_message, user_error
from export_assets.lib.sample import SampleDeployment
from export_assets_tests.conftest import configured, export_resources, proxy_credentials
from export_assets_tests.test_round_trip import EXPORT_KEY, PARTITION, sample_keys


def run(
    sample: SampleDeployment,
    exports: Path,
    instance: DagsterInstance,
    asset: Any,
    config: dict[str, Any],
) -> tuple[bool, str]:
    """Materialize one asset; (success, the user's error message)."""
    result = materialize(
        [configured(asset, config)],
        partition_key=PARTITION,
        instance=instance,
        raise_on_error=False,
        resources=export_resources(sample.database, exports, config_path=str(sample.config_path)),
    )
    failures = result.get_step_failure_events()
    if not failures:
        return True, ""
    error = failures[0].step_failure_data.error
    assert error is not None
    return False, error_message(user_error(error))


def pool_rows(exports: Path) -> list[dict[str, str]]:
    folder = exports / "proxy_list" / f"dt={PARTITION}"
    data = gzip.decompress(next(folder.glob("proxy_list-*.csv.gz")).read_bytes())
    return list(csv.DictReader(io.StringIO(data.decode())))


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, sample_deployment: SampleDeployment) -> pytest.MonkeyPatch:
    sample_keys(monkeypatch, sample_deployment)
    monkeypatch.setenv("EXPORT_ENCRYPTION_KEY", EXPORT_KEY)
    return monkeypatch


def test_redact_is_the_default_and_selected_fields_stay_empty(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    env: pytest.MonkeyPatch,
) -> None:
    ok, _ = run(sample_deployment, tmp_path / "a", instance, proxy_list, {})
    assert ok
    assert "username" not in pool_rows(tmp_path / "a")[0]
    ok, _ = run(
        sample_deployment,
        tmp_path / "b",
        instance,
        proxy_list,
        {"fields": ["url", "username", "password"]},
    )
    rows = pool_rows(tmp_path / "b")
    assert ok
    assert len(rows) == 80
    assert all(row["username"] == "" and row["password"] == "" for row in rows)


def test_encrypt_reencrypts_with_the_export_key(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    env: pytest.MonkeyPatch,
) -> None:
    ok, message = run(sample_deployment, tmp_path, instance, proxy_list, {"credentials": "encrypt"})
    assert ok, message
    fernet = Fernet(EXPORT_KEY)
    clear = {
        fernet.decrypt(row[key].encode()).decode()
        for row in pool_rows(tmp_path)
        for key in ("username", "password")
        if row[key]
    }
    secrets = proxy_credentials(sample_deployment.database, sample_deployment.env_file)
    # Every decrypted value is a credential of the database, and every credential is there.
    plain = {value for value in secrets if not value.startswith("Z0FBQUFB")}
    assert clear == plain
    manifest = json.loads(
        (tmp_path / "proxy_list" / f"dt={PARTITION}" / "_manifest.json").read_text()
    )
    assert manifest["credential_policy"] == "encrypt"
    assert manifest["encryption"]["key_id"].startswith("sha256:")
    assert EXPORT_KEY not in json.dumps(manifest)


def test_encrypt_reads_rotated_proxywhirl_keys(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("PROXYWHIRL_CACHE_ENCRYPTION_KEY", Fernet.generate_key().decode())
    env.setenv("PROXYWHIRL_CACHE_KEY_PREVIOUS", sample_deployment.cache_encryption_key)
    ok, message = run(sample_deployment, tmp_path, instance, proxy_list, {"credentials": "encrypt"})
    assert ok, message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("unset_proxywhirl", "is encrypted but PROXYWHIRL_CACHE_ENCRYPTION_KEY is not set"),
        ("wrong_proxywhirl", "does not decrypt with PROXYWHIRL_CACHE_ENCRYPTION_KEY"),
        (
            "unset_export",
            "credentials policy encrypt needs EXPORT_ENCRYPTION_KEY (a Fernet key) or "
            "EXPORT_PASSWORD",
        ),
        ("bad_export", "EXPORT_ENCRYPTION_KEY is not a Fernet key"),
    ],
)
def test_encrypt_fails_clearly_without_the_right_keys(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    env: pytest.MonkeyPatch,
    change: str,
    expected: str,
) -> None:
    wrong = Fernet.generate_key().decode()
    if change == "unset_proxywhirl":
        env.delenv("PROXYWHIRL_CACHE_ENCRYPTION_KEY")
    elif change == "wrong_proxywhirl":
        env.setenv("PROXYWHIRL_CACHE_ENCRYPTION_KEY", wrong)
    elif change == "unset_export":
        env.delenv("EXPORT_ENCRYPTION_KEY")
    else:
        env.setenv("EXPORT_ENCRYPTION_KEY", "not-a-key")
    ok, message = run(sample_deployment, tmp_path, instance, proxy_list, {"credentials": "encrypt"})
    assert not ok
    assert expected in message
    assert wrong not in message
    assert sample_deployment.cache_encryption_key not in message
    assert not (tmp_path / "proxy_list").exists()  # nothing written, no ciphertext passed on


def test_reference_placeholders_are_stable(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    env: pytest.MonkeyPatch,
) -> None:
    for name in ("a", "b"):
        ok, _ = run(
            sample_deployment, tmp_path / name, instance, proxy_list, {"credentials": "reference"}
        )
        assert ok
    first, second = pool_rows(tmp_path / "a"), pool_rows(tmp_path / "b")
    assert first == second
    values = [row["username"] for row in first if row["username"]]
    assert values
    assert all(v.startswith("${PROXYWHIRL_CRED_") and v.endswith("_USERNAME}") for v in values)


def test_pool_config_encrypt_and_missing_config_key(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    env: pytest.MonkeyPatch,
) -> None:
    ok, message = run(
        sample_deployment,
        tmp_path / "a",
        instance,
        pool_config,
        {"credentials": "encrypt", "format": "json"},
    )
    assert ok, message
    folder = tmp_path / "a" / "pool_config" / f"dt={PARTITION}"
    document = json.loads(next(folder.glob("pool_config-*")).read_bytes())
    tokens = [e["password"] for e in document["proxies"] if "password" in e]
    secrets = proxy_credentials(sample_deployment.database, sample_deployment.env_file)
    assert tokens
    assert all(Fernet(EXPORT_KEY).decrypt(t.encode()).decode() in secrets for t in tokens)
    assert any(e.get("credentials") == "not recoverable from the file" for e in document["proxies"])

    env.delenv("PROXYWHIRL_KEY")
    ok, message = run(
        sample_deployment, tmp_path / "b", instance, pool_config, {"credentials": "encrypt"}
    )
    assert not ok
    assert "encrypted under PROXYWHIRL_KEY (its encryption_key_env), which is not set" in message
    assert not (tmp_path / "b" / "pool_config").exists()
