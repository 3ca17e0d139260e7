"""restore config: TOML ProxyWhirl loads, credentials under its key; bad inputs change nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from export_assets.cli import main
from export_assets.defs.operations.restore import restore_config_job
from export_assets.lib.restore import RestoreError
from export_assets.lib.restore.config import restore_config
from export_assets.lib.sample import SampleDeployment
from export_assets_tests import test_restore_pool as pool_tests
from export_assets_tests.test_round_trip import EXPORT_KEY, PARTITION

OTHER_KEY = pool_tests.OTHER_KEY
exports = pool_tests.exports  # the same fixtures: encrypted, password and reference exports
keys = pool_tests.keys

EXISTING = 'timeout = 10\n# a comment ProxyWhirl keeps\n[[proxies]]\nurl = "http://192.0.2.1:80"\n'


def config_export(exports: Path, kind: str = "key") -> Path:
    return exports / kind / "pool_config" / f"dt={PARTITION}"


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "proxywhirl.toml"
    path.write_text(EXISTING)
    return path


def fails(export: Path, target: Path, expected: str) -> str:
    before = target.read_bytes() if target.exists() else None
    with pytest.raises(RestoreError) as error:
        restore_config(export, target)
    assert expected in str(error.value)
    if before is None:
        assert not target.exists()
    else:
        assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir() if p.name.startswith(".")) == []
    return str(error.value)


def test_restores_credentials_under_the_configs_key(
    exports: Path,
    target: Path,
    keys: None,
    sample_deployment: SampleDeployment,
) -> None:
    diff = restore_config(config_export(exports), target)
    settings = tomllib.loads(target.read_text())
    fernet = Fernet(sample_deployment.config_encryption_key)
    original = tomllib.loads(sample_deployment.config_path.read_text())
    by_url = {entry["url"]: entry for entry in original["proxies"]}
    credentialed = [e for e in settings["proxies"] if "username" in e and e["username"] != "*" * 10]
    assert credentialed
    for entry in credentialed:
        for key in ("username", "password"):
            clear = fernet.decrypt(entry[key].encode()).decode()
            assert clear == fernet.decrypt(by_url[entry["url"]][key].encode()).decode()
    assert settings["encryption_key_env"] == "PROXYWHIRL_KEY"
    assert "timeout" in diff.changed
    assert "rotation_strategy" in diff.added


def test_reference_export_resolves_from_the_environment(
    exports: Path,
    tmp_path: Path,
    keys: None,
    monkeypatch: pytest.MonkeyPatch,
    sample_deployment: SampleDeployment,
) -> None:
    document = json.loads(
        next(config_export(exports, "reference").glob("pool_config-*")).read_bytes()
    )
    placeholders = {
        entry[key][2:-1]
        for entry in document["proxies"]
        for key in ("username", "password")
        if key in entry
    }
    assert placeholders
    assert all(p.startswith("PROXYWHIRL_CRED_") for p in placeholders)
    for name in placeholders:
        monkeypatch.setenv(name, f"value-of-{name}")
    target = tmp_path / "proxywhirl.toml"
    restore_config(config_export(exports, "reference"), target)
    fernet = Fernet(sample_deployment.config_encryption_key)
    restored = tomllib.loads(target.read_text())
    values = {
        fernet.decrypt(entry[key].encode()).decode()
        for entry in restored["proxies"]
        for key in ("username", "password")
        if key in entry and entry[key] != "*" * 10
    }
    assert values == {f"value-of-{name}" for name in placeholders}


def test_wrong_export_key(
    exports: Path,
    target: Path,
    keys: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPORT_ENCRYPTION_KEY", OTHER_KEY)
    message = fails(config_export(exports), target, "EXPORT_ENCRYPTION_KEY is not the key")
    assert OTHER_KEY not in message


def test_wrong_password(
    exports: Path,
    target: Path,
    keys: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPORT_PASSWORD", "wrong")
    fails(config_export(exports, "password"), target, "EXPORT_PASSWORD is not the password")


def test_missing_config_key(
    exports: Path,
    target: Path,
    keys: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROXYWHIRL_KEY")
    fails(
        config_export(exports),
        target,
        "encrypted under PROXYWHIRL_KEY (its encryption_key_env), which is not set",
    )


def test_missing_export_key_into_a_new_file(
    exports: Path,
    tmp_path: Path,
    keys: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EXPORT_ENCRYPTION_KEY")
    fails(config_export(exports), tmp_path / "new.toml", "EXPORT_ENCRYPTION_KEY is not set")


def _copy(exports: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "copy" / "pool_config" / f"dt={PARTITION}"
    shutil.copytree(config_export(exports), folder)
    return folder


def test_tampered_file(exports: Path, target: Path, tmp_path: Path, keys: None) -> None:
    folder = _copy(exports, tmp_path)
    data = next(p for p in folder.iterdir() if p.name != "_manifest.json")
    raw = bytearray(data.read_bytes())
    raw[-30] ^= 0x20
    data.write_bytes(bytes(raw))
    fails(folder, target, "does not match its manifest")


def test_manifest_missing_and_foreign(
    exports: Path,
    target: Path,
    tmp_path: Path,
    keys: None,
) -> None:
    folder = _copy(exports, tmp_path)
    shutil.copy(exports / "key" / "proxy_list" / f"dt={PARTITION}" / "_manifest.json", folder)
    fails(folder, target, "is the manifest of a proxy_list export, not pool_config")
    (folder / "_manifest.json").unlink()
    fails(folder, target, "no _manifest.json in")


def test_unknown_schema_version(
    exports: Path,
    target: Path,
    tmp_path: Path,
    keys: None,
) -> None:
    folder = _copy(exports, tmp_path)
    manifest = json.loads((folder / "_manifest.json").read_bytes())
    manifest["manifest_version"] = 99
    (folder / "_manifest.json").write_text(json.dumps(manifest))
    fails(folder, target, "has manifest version 99")


def test_dry_run_and_cli(exports: Path, target: Path, keys: None) -> None:
    before = target.read_bytes()
    result = CliRunner().invoke(
        main, ["restore", "config", str(config_export(exports)), "--to", str(target), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "~ timeout" in result.output
    assert "would write" in result.output
    assert "not recoverable" in result.output
    assert target.read_bytes() == before
    result = CliRunner().invoke(
        main, ["restore", "config", str(config_export(exports)), "--to", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert tomllib.loads(target.read_text())["timeout"] == 30
    assert EXPORT_KEY not in result.output


def test_into_pyproject_keeps_the_rest(
    exports: Path,
    tmp_path: Path,
    keys: None,
) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "mine"\n\n[tool.proxywhirl]\ntimeout = 5\n')
    restore_config(config_export(exports), pyproject)
    document = tomllib.loads(pyproject.read_text())
    assert document["project"] == {"name": "mine"}
    assert document["tool"]["proxywhirl"]["timeout"] == 30


def test_restore_config_job(exports: Path, tmp_path: Path, keys: None) -> None:
    target = tmp_path / "proxywhirl.toml"
    result = restore_config_job.execute_in_process(
        run_config={
            "ops": {
                "restore_config_op": {
                    "config": {
                        "export": str(config_export(exports)),
                        "to": str(target),
                    }
                }
            }
        },
    )
    assert result.success
    assert "proxies" in tomllib.loads(target.read_text())
    before = hashlib.sha256(target.read_bytes()).hexdigest()
    failed = restore_config_job.execute_in_process(
        run_config={
            "ops": {
                "restore_config_op": {
                    "config": {
                        "export": str(exports / "key" / "proxy_list" / f"dt={PARTITION}"),
                        "to": str(target),
                    }
                }
            }
        },
        raise_on_error=False,
    )
    assert not failed.success
    assert hashlib.sha256(target.read_bytes()).hexdigest() == before


def test_a_new_config_is_written_0600(exports: Path, tmp_path: Path, keys: None) -> None:
    # ProxyWhirl's save_config writes 0600: a restored config may hold a plaintext password.
    target = tmp_path / "new" / "proxywhirl.toml"
    target.parent.mkdir()
    restore_config(config_export(exports), target)
    assert target.stat().st_mode & 0o777 == 0o600
    result = CliRunner().invoke(
        main, ["restore", "config", str(config_export(exports)), "--to", str(tmp_path / "p.toml")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.toml").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644])
def test_an_existing_config_keeps_its_mode(
    exports: Path, target: Path, keys: None, mode: int
) -> None:
    target.chmod(mode)
    restore_config(config_export(exports), target)
    assert target.stat().st_mode & 0o777 == mode
    assert tomllib.loads(target.read_text())["encryption_key_env"] == "PROXYWHIRL_KEY"


def test_a_target_in_a_missing_folder_or_a_folder_is_refused(
    exports: Path, tmp_path: Path, keys: None
) -> None:
    missing = tmp_path / "nowhere" / "proxywhirl.toml"
    with pytest.raises(RestoreError, match=r"nowhere does not exist: create the folder first"):
        restore_config(config_export(exports), missing)
    assert not missing.parent.exists()
    result = CliRunner().invoke(
        main, ["restore", "config", str(config_export(exports)), "--to", str(missing)]
    )
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: {missing.parent} does not exist: create the folder first"
    ]
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(RestoreError, match=r"a-folder is a folder: give the TOML file"):
        restore_config(config_export(exports), folder)
    assert list(folder.iterdir()) == []
