"""SC-006: export pool and config with ``encrypt``, restore into an empty folder, export again."""

from __future__ import annotations

import gzip
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet
from dagster import DagsterInstance, materialize

from export_assets.defs.exports import pool_config, proxy_list
from export_assets.defs.exports.daily import with_settings
from export_assets.lib.exports.manifest import ExportManifest
from export_assets.lib.restore.config import restore_config
from export_assets.lib.restore.pool import restore_pool
from export_assets.lib.sample import SampleDeployment
from export_assets.lib.security.crypto import decrypt_database_credential, proxywhirl_cipher
from export_assets.lib.source import POOL_SCHEMA
from export_assets.lib.source.schema import REQUIRED_COLUMNS
from export_assets_tests.conftest import SAMPLE_END, export_resources

PARTITION = SAMPLE_END.isoformat()
EXPORT_KEY = "q3Yb8m2dS0kq7s1o2Vw3cYVxN0tqYbQ5bX6J1o0l2Pc="
IDENTITY = REQUIRED_COLUMNS["proxy_identities"]
# The pool itself: identity, geography and credentials. Health is rebuilt from the
# validation history, which a pool export does not carry.
POOL_FIELDS = [name for name in POOL_SCHEMA.names if name in IDENTITY] + ["username", "password"]


def sample_keys(monkeypatch: pytest.MonkeyPatch, sample: SampleDeployment) -> None:
    """The deployment's keys in the environment, as a ProxyWhirl host has them."""
    monkeypatch.setenv("PROXYWHIRL_CACHE_ENCRYPTION_KEY", sample.cache_encryption_key)
    monkeypatch.setenv("PROXYWHIRL_KEY", sample.config_encryption_key)
    monkeypatch.delenv("PROXYWHIRL_CACHE_KEY_PREVIOUS", raising=False)
    monkeypatch.delenv("EXPORT_ENCRYPTION_KEY", raising=False)
    monkeypatch.delenv("EXPORT_PASSWORD", raising=False)


def export_backup(
    database: Path,
    config: Path,
    exports: Path,
    instance: DagsterInstance,
    credentials: str = "encrypt",
) -> None:
    """Export the pool (as JSON, the pool's fields) and the config, with both checks each
    (reported from the assets' own steps)."""
    result = materialize(
        [
            with_settings(proxy_list, format="json", fields=POOL_FIELDS, credentials=credentials),
            with_settings(pool_config, format="json", credentials=credentials),
        ],
        partition_key=PARTITION,
        resources=export_resources(database, exports, config_path=str(config)),
        instance=instance,
    )
    assert result.success
    assert all(check.passed for check in result.get_asset_check_evaluations())


def folder(exports: Path, asset: str) -> Path:
    return exports / asset / f"dt={PARTITION}"


def data_of(exports: Path, asset: str) -> bytes:
    """The data file the manifest lists, decompressed (an independent reader: gzip)."""
    manifest = ExportManifest.from_json((folder(exports, asset) / "_manifest.json").read_bytes())
    raw = (folder(exports, asset) / manifest.files[0].path).read_bytes()
    return gzip.decompress(raw) if manifest.compression == "gzip" else raw


def decrypted_pool(exports: Path, fernet: Fernet) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(data_of(exports, "proxy_list"))
    for row in rows:
        for key in ("username", "password"):
            if row[key] is not None:
                row[key] = fernet.decrypt(row[key].encode()).decode()
    return rows


def decrypted_config(exports: Path, fernet: Fernet) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(data_of(exports, "pool_config"))
    for entry in document["proxies"]:
        for key in ("username", "password"):
            if key in entry:
                entry[key] = fernet.decrypt(entry[key].encode()).decode()
    return document


def identities(database: Path) -> dict[str, dict[str, Any]]:
    """proxy_identities by URL, credentials decrypted, timestamps as instants."""
    cipher = proxywhirl_cipher()
    connection = sqlite3.connect(database)
    try:
        rows = connection.execute(
            f"SELECT {', '.join(IDENTITY)} FROM proxy_identities WHERE discovered_at < ?",
            ("2026-11-21",),
        ).fetchall()
    finally:
        connection.close()
    found = {}
    for row in rows:
        record = dict(zip(IDENTITY, row, strict=True))
        for key in ("username", "password"):
            if record[key] is not None:
                record[key] = decrypt_database_credential(record[key], cipher, key)
        moment = datetime.fromisoformat(record["discovered_at"].replace("Z", "+00:00"))
        record["discovered_at"] = moment.replace(tzinfo=moment.tzinfo or UTC)
        found[record["url"]] = record
    return found


@pytest.mark.parametrize("secret", ["key", "password"])
def test_encrypted_backup_restores_the_identical_deployment(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    secret: str,
) -> None:
    sample_keys(monkeypatch, sample_deployment)
    if secret == "key":
        monkeypatch.setenv("EXPORT_ENCRYPTION_KEY", EXPORT_KEY)
    else:
        monkeypatch.setenv("EXPORT_PASSWORD", "correct horse battery staple")
    first = tmp_path / "first"
    export_backup(sample_deployment.database, sample_deployment.config_path, first, instance)
    manifest = ExportManifest.from_json(
        (folder(first, "proxy_list") / "_manifest.json").read_bytes()
    )
    assert manifest.credential_policy == "encrypt"
    assert manifest.encryption is not None
    assert manifest.encryption["key_id"].startswith("sha256:")
    manifest_text = (folder(first, "proxy_list") / "_manifest.json").read_text()
    assert EXPORT_KEY not in manifest_text
    assert "correct horse" not in manifest_text
    if secret == "password":
        assert manifest.encryption["kdf"]["name"] == "scrypt"
        assert manifest.encryption["kdf"]["salt"]

    restored = tmp_path / "restored"
    restored.mkdir()
    pool_diff = restore_pool(folder(first, "proxy_list"), restored / "proxies.db")
    restore_config(folder(first, "pool_config"), restored / "proxywhirl.toml")
    assert pool_diff.created
    assert not pool_diff.updated
    assert not pool_diff.skipped

    second = tmp_path / "second"
    export_backup(restored / "proxies.db", restored / "proxywhirl.toml", second, instance)

    # The export key of each run: the same key, or the same password with a fresh salt.
    from export_assets.lib.security.crypto import export_cipher_for_reading

    def fernet_of(exports: Path, asset: str) -> Fernet:
        record = ExportManifest.from_json(
            (folder(exports, asset) / "_manifest.json").read_bytes()
        ).encryption
        assert record is not None
        return export_cipher_for_reading(record).fernet

    first_pool = decrypted_pool(first, fernet_of(first, "proxy_list"))
    second_pool = decrypted_pool(second, fernet_of(second, "proxy_list"))
    assert len(first_pool) == sample_deployment.proxies
    assert any(row["password"] for row in first_pool)
    assert second_pool == first_pool
    assert decrypted_config(second, fernet_of(second, "pool_config")) == decrypted_config(
        first, fernet_of(first, "pool_config")
    )

    # The restored database holds every proxy, same fields, same decrypted credentials.
    original = identities(sample_deployment.database)
    assert identities(restored / "proxies.db") == original
    # ... encrypted the ProxyWhirl way (legacy plain values included).
    connection = sqlite3.connect(restored / "proxies.db")
    stored = connection.execute(
        "SELECT password FROM proxy_identities WHERE password IS NOT NULL"
    ).fetchall()
    connection.close()
    assert stored
    assert all(value.startswith("encrypted:") for (value,) in stored)


def test_restored_config_is_what_proxywhirl_loads(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tomllib

    sample_keys(monkeypatch, sample_deployment)
    monkeypatch.setenv("EXPORT_ENCRYPTION_KEY", EXPORT_KEY)
    export_backup(
        sample_deployment.database, sample_deployment.config_path, tmp_path / "e", instance
    )
    target = tmp_path / "proxywhirl.toml"
    diff = restore_config(folder(tmp_path / "e", "pool_config"), target)
    original = tomllib.loads(sample_deployment.config_path.read_text())
    restored = tomllib.loads(target.read_text())
    fernet = Fernet(sample_deployment.config_encryption_key)

    def clear(settings: dict[str, Any]) -> dict[str, Any]:
        for entry in settings["proxies"]:
            for key in ("username", "password"):
                if key in entry and entry[key] != "**********":
                    entry[key] = fernet.decrypt(entry[key].encode()).decode()
        return settings

    assert clear(restored) == clear(original)
    assert any("not recoverable" in note for note in diff.notes)
    yaml.safe_dump(restored)  # plain data: tables, strings, numbers, booleans
