"""restore pool: verified before anything is touched; a bad input leaves the target as it was."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from dagster import DagsterInstance

from export_assets.cli import main
from export_assets.defs.operations.restore import restore_pool_job
from export_assets.lib.restore import RestoreError
from export_assets.lib.restore.pool import restore_pool
from export_assets.lib.sample import SampleDeployment
from export_assets_tests.test_round_trip import EXPORT_KEY, PARTITION, export_backup, sample_keys

OTHER_KEY = Fernet.generate_key().decode()


@pytest.fixture(scope="module")
def exports(sample_deployment: SampleDeployment, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Encrypted (key), encrypted (password) and reference exports of the sample, made once."""
    root = tmp_path_factory.mktemp("exports")
    with pytest.MonkeyPatch.context() as patch, DagsterInstance.ephemeral() as instance:
        sample_keys(patch, sample_deployment)
        patch.setenv("EXPORT_ENCRYPTION_KEY", EXPORT_KEY)
        export_backup(
            sample_deployment.database, sample_deployment.config_path, root / "key", instance
        )
        patch.delenv("EXPORT_ENCRYPTION_KEY")
        patch.setenv("EXPORT_PASSWORD", "correct horse")
        export_backup(
            sample_deployment.database, sample_deployment.config_path, root / "password", instance
        )
        export_backup(
            sample_deployment.database,
            sample_deployment.config_path,
            root / "reference",
            instance,
            credentials="reference",
        )
    return root


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch, sample_deployment: SampleDeployment) -> None:
    sample_keys(monkeypatch, sample_deployment)
    monkeypatch.setenv("EXPORT_ENCRYPTION_KEY", EXPORT_KEY)


def copy_export(exports: Path, kind: str, tmp_path: Path) -> Path:
    """A private copy of one export's partition folder, to damage."""
    target = tmp_path / kind / "proxy_list" / f"dt={PARTITION}"
    shutil.copytree(exports / kind / "proxy_list" / f"dt={PARTITION}", target)
    return target


def data_file(folder: Path) -> Path:
    return next(path for path in folder.iterdir() if path.name != "_manifest.json")


@pytest.fixture
def target(sample_deployment: SampleDeployment, tmp_path: Path) -> Path:
    """An existing ProxyWhirl database to restore into."""
    path = tmp_path / "target" / "proxies.db"
    path.parent.mkdir()
    shutil.copy(sample_deployment.database, path)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fails(export: Path, database: Path, expected: str, **options: object) -> str:
    """Restore must fail with ``expected`` in its message and leave ``database`` unchanged."""
    before = digest(database) if database.exists() else None
    siblings = sorted(p.name for p in database.parent.iterdir()) if database.parent.exists() else []
    with pytest.raises(RestoreError) as error:
        restore_pool(export, database, **options)  # type: ignore[arg-type]
    message = str(error.value)
    assert expected in message
    if before is None:
        assert not database.exists()
    else:
        assert digest(database) == before
    after = sorted(p.name for p in database.parent.iterdir()) if database.parent.exists() else []
    assert after == siblings  # no debris either
    return message


def test_wrong_key(
    exports: Path, target: Path, keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPORT_ENCRYPTION_KEY", OTHER_KEY)
    message = fails(
        exports / "key" / "proxy_list" / f"dt={PARTITION}",
        target,
        "EXPORT_ENCRYPTION_KEY is not the key this export was encrypted with (key id sha256:",
    )
    assert OTHER_KEY not in message
    assert EXPORT_KEY not in message


def test_wrong_password(
    exports: Path, target: Path, keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPORT_PASSWORD", "incorrect horse")
    message = fails(
        exports / "password" / "proxy_list" / f"dt={PARTITION}",
        target,
        "EXPORT_PASSWORD is not the password this export was encrypted with",
    )
    assert "horse" not in message


def test_missing_key_variable(
    exports: Path, target: Path, keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EXPORT_ENCRYPTION_KEY")
    fails(
        exports / "key" / "proxy_list" / f"dt={PARTITION}",
        target,
        "but EXPORT_ENCRYPTION_KEY is not set: set it to the export's Fernet key",
    )


def test_missing_password_variable_into_a_new_database(
    exports: Path, tmp_path: Path, keys: None
) -> None:
    fails(
        exports / "password" / "proxy_list" / f"dt={PARTITION}",
        tmp_path / "new.db",
        "encrypted with a password (key id sha256:",
    )


def test_missing_proxywhirl_key(
    exports: Path, tmp_path: Path, keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROXYWHIRL_CACHE_ENCRYPTION_KEY")
    fails(
        exports / "key" / "proxy_list" / f"dt={PARTITION}",
        tmp_path / "proxies.db",
        "PROXYWHIRL_CACHE_ENCRYPTION_KEY is not set: restore encrypts credentials",
    )


def test_unset_reference_variable(exports: Path, target: Path, keys: None) -> None:
    fails(
        exports / "reference" / "proxy_list" / f"dt={PARTITION}",
        target,
        "credential variable(s) are not set: PROXYWHIRL_CRED_",
    )


def test_tampered_file(exports: Path, target: Path, tmp_path: Path, keys: None) -> None:
    folder = copy_export(exports, "key", tmp_path)
    data = bytearray(data_file(folder).read_bytes())
    data[len(data) // 2] ^= 0x01
    data_file(folder).write_bytes(bytes(data))
    fails(folder, target, "does not match its manifest")


def test_truncated_gzip(exports: Path, target: Path, tmp_path: Path, keys: None) -> None:
    folder = copy_export(exports, "key", tmp_path)
    path = data_file(folder)
    path.write_bytes(path.read_bytes()[:-200])
    fails(folder, target, "manifest says")


def test_truncated_gzip_with_a_matching_manifest(
    exports: Path, target: Path, tmp_path: Path, keys: None
) -> None:
    # Even when someone "fixed" the manifest, the damaged stream is refused, not half-read.
    folder = copy_export(exports, "key", tmp_path)
    path = data_file(folder)
    path.write_bytes(path.read_bytes()[:-200])
    manifest = json.loads((folder / "_manifest.json").read_bytes())
    manifest["files"][0].update(bytes=path.stat().st_size, sha256=digest(path))
    (folder / "_manifest.json").write_text(json.dumps(manifest))
    fails(folder, target, "does not decompress as gzip")


def test_manifest_missing(exports: Path, target: Path, tmp_path: Path, keys: None) -> None:
    folder = copy_export(exports, "key", tmp_path)
    (folder / "_manifest.json").unlink()
    fails(data_file(folder), target, f"no _manifest.json in {folder}")


def test_manifest_from_another_asset(
    exports: Path, target: Path, tmp_path: Path, keys: None
) -> None:
    folder = copy_export(exports, "key", tmp_path)
    shutil.copy(exports / "key" / "pool_config" / f"dt={PARTITION}" / "_manifest.json", folder)
    fails(folder, target, "is the manifest of a pool_config export, not proxy_list")


def test_unknown_schema_version(exports: Path, target: Path, tmp_path: Path, keys: None) -> None:
    folder = copy_export(exports, "key", tmp_path)
    manifest = json.loads((folder / "_manifest.json").read_bytes())
    manifest["manifest_version"] = 2
    (folder / "_manifest.json").write_text(json.dumps(manifest))
    fails(folder, target, "has manifest version 2; this export_assets reads version 1")


def test_broken_manifest_chain(exports: Path, target: Path, tmp_path: Path, keys: None) -> None:
    folder = copy_export(exports, "key", tmp_path)
    manifest = json.loads((folder / "_manifest.json").read_bytes())
    manifest["previous_manifest"] = {"partition": "2026-11-19", "sha256": "0" * 64}
    (folder / "_manifest.json").write_text(json.dumps(manifest))
    earlier = folder.parent / "dt=2026-11-19"
    earlier.mkdir()
    (earlier / "_manifest.json").write_text("{}")
    fails(folder, target, "the manifest chain is broken")


def test_target_that_is_not_proxywhirls(exports: Path, tmp_path: Path, keys: None) -> None:
    other = tmp_path / "other.db"
    connection = sqlite3.connect(other)
    connection.execute("CREATE TABLE notes (text TEXT)")
    connection.commit()
    connection.close()
    fails(
        exports / "key" / "proxy_list" / f"dt={PARTITION}",
        other,
        "is not ProxyWhirl's database (no table proxy_identities)",
    )
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all\n" * 100)
    fails(
        exports / "key" / "proxy_list" / f"dt={PARTITION}",
        text,
        "is not ProxyWhirl's database (file is not a database)",
    )


def test_target_locked_by_a_writer(exports: Path, target: Path, keys: None) -> None:
    writer = sqlite3.connect(target, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM proxy_statuses")  # uncommitted: rolled back below
        with pytest.raises(RestoreError) as error:
            restore_pool(
                exports / "key" / "proxy_list" / f"dt={PARTITION}",
                target,
                on_duplicate="overwrite",
                busy_timeout_ms=50,
            )
        assert "is locked by another writer (a running ProxyWhirl?)" in str(error.value)
        assert "nothing was changed" in str(error.value)
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_target_unchanged_after_a_lock(exports: Path, target: Path, keys: None) -> None:
    before = digest(target)
    writer = sqlite3.connect(target, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(RestoreError):
            restore_pool(
                exports / "key" / "proxy_list" / f"dt={PARTITION}",
                target,
                on_duplicate="overwrite",
                busy_timeout_ms=50,
            )
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert digest(target) == before


def _identity(database: Path, url: str) -> tuple[object, ...]:
    connection = sqlite3.connect(database)
    try:
        row = connection.execute(
            "SELECT country_name, isp_name, username FROM proxy_identities WHERE url = ?", (url,)
        ).fetchone()
        status = connection.execute(
            "SELECT health_status FROM proxy_statuses WHERE proxy_url = ?", (url,)
        ).fetchone()
    finally:
        connection.close()
    return (*row, status[0] if status else None)


def _first_url(exports: Path) -> str:
    data = gzip.decompress(
        data_file(exports / "key" / "proxy_list" / f"dt={PARTITION}").read_bytes()
    )
    return str(json.loads(data)[0]["url"])


def _edit(database: Path, url: str) -> None:
    connection = sqlite3.connect(database)
    connection.execute(
        "UPDATE proxy_identities SET country_name = NULL, isp_name = 'Edited ISP' WHERE url = ?",
        (url,),
    )
    connection.execute(
        "UPDATE proxy_statuses SET health_status = 'dead' WHERE proxy_url = ?", (url,)
    )
    connection.commit()
    connection.close()


def test_on_duplicate_skip_overwrite_merge(exports: Path, target: Path, keys: None) -> None:
    export = exports / "key" / "proxy_list" / f"dt={PARTITION}"
    url = _first_url(exports)
    original = _identity(target, url)
    _edit(target, url)

    skipped = restore_pool(export, target)
    assert not skipped.added
    assert not skipped.updated
    assert url in skipped.skipped
    assert _identity(target, url)[:2] == (None, "Edited ISP")

    merged = restore_pool(export, target, on_duplicate="merge")
    assert url in merged.updated
    # merge fills the empty field, keeps the edited one and the existing status.
    assert _identity(target, url)[:2] == (original[0], "Edited ISP")
    assert _identity(target, url)[3] == "dead"

    overwritten = restore_pool(export, target, on_duplicate="overwrite")
    assert url in overwritten.updated
    assert _identity(target, url)[:2] == original[:2]


def test_dry_run_prints_the_diff_and_writes_nothing(
    exports: Path, target: Path, tmp_path: Path, keys: None
) -> None:
    export = exports / "key" / "proxy_list" / f"dt={PARTITION}"
    url = _first_url(exports)
    _edit(target, url)
    before = digest(target)
    result = CliRunner().invoke(
        main,
        [
            "restore",
            "pool",
            str(export),
            "--db",
            str(target),
            "--on-duplicate",
            "merge",
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"~ {url}" in result.output
    assert "would restore into" in result.output
    assert "1 updated" in result.output
    assert digest(target) == before
    fresh = tmp_path / "fresh.db"
    result = CliRunner().invoke(
        main, ["restore", "pool", str(export), "--db", str(fresh), "--dry-run"]
    )
    assert result.exit_code == 0
    assert "80 added" in result.output
    assert not fresh.exists()


def test_cli_reports_a_bad_input_and_exits_1(exports: Path, tmp_path: Path, keys: None) -> None:
    folder = copy_export(exports, "key", tmp_path)
    (folder / "_manifest.json").unlink()
    result = CliRunner().invoke(
        main, ["restore", "pool", str(folder), "--db", str(tmp_path / "proxies.db")]
    )
    assert result.exit_code == 1
    assert "no _manifest.json in" in result.output
    assert not (tmp_path / "proxies.db").exists()


def test_restore_pool_job(exports: Path, tmp_path: Path, keys: None) -> None:
    database = tmp_path / "proxies.db"
    result = restore_pool_job.execute_in_process(
        run_config={
            "ops": {
                "restore_pool_op": {
                    "config": {
                        "export": str(exports / "key" / "proxy_list" / f"dt={PARTITION}"),
                        "database": str(database),
                    }
                }
            }
        },
    )
    assert result.success
    connection = sqlite3.connect(database)
    assert connection.execute("SELECT count(*) FROM proxy_identities").fetchone()[0] == 80
    connection.close()
    failed = restore_pool_job.execute_in_process(
        run_config={
            "ops": {
                "restore_pool_op": {
                    "config": {
                        "export": str(tmp_path / "nowhere"),
                        "database": str(database),
                    }
                }
            }
        },
        raise_on_error=False,
    )
    assert not failed.success
    failure = failed.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None
    assert "does not exist" in failure.message
