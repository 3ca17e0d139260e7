"""The leak check is honest about its coverage: credentials it cannot decrypt are said, loudly.

Without ProxyWhirl's key the scanner can look for the stored (encrypted) form of a
credential only: a clear-text leak would pass unseen. The check then fails with WARN
severity (which does not block), the run log says so at WARNING, and ``scan`` exits 3.
"""

# No "from __future__ import annotations": Dagster reads the test asset's annotations.

import hashlib
import logging
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    ExecuteInProcessResult,
    asset,
    materialize,
)

from export_assets.cli import main
from export_assets.cli.secrets import EXIT_INCOMPLETE
from export_assets.defs.exports import proxy_list
from export_assets.defs.exports.daily import NO_LEAK, ranged_backfill
from export_assets.defs.partitions import daily_partitions
from export_assets.lib.sample import SampleDeployment
from export_assets.lib.security.leaks import known_credentials
from export_assets_tests.conftest import export_resources, proxy_credentials
from export_assets_tests.test_round_trip import PARTITION, sample_keys

CACHE_KEY = "PROXYWHIRL_CACHE_ENCRYPTION_KEY"


@asset(
    partitions_def=daily_partitions,
    deps=[proxy_list],
    backfill_policy=ranged_backfill,  # as proxy_list's
)
def after_the_pool() -> None:
    """Downstream of proxy_list: runs only if the blocking leak check lets it."""


def encrypted_in_database(database: Path) -> int:
    """How many stored credentials are in ProxyWhirl's encrypted form (plain SQL)."""
    with sqlite3.connect(database) as connection:
        (count,) = connection.execute(
            "SELECT sum(username LIKE 'encrypted:%') + sum(password LIKE 'encrypted:%')"
            " FROM proxy_identities"
        ).fetchone()
    connection.close()
    return int(count)


def run_pool_with_check(
    sample: SampleDeployment, exports: Path, instance: DagsterInstance
) -> tuple[ExecuteInProcessResult, AssetCheckEvaluation]:
    result = materialize(
        [proxy_list, after_the_pool],
        partition_key=PARTITION,
        instance=instance,
        raise_on_error=False,
        resources=export_resources(sample.database, exports, config_path=str(sample.config_path)),
    )
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == NO_LEAK]
    return result, evaluation


def warnings_logged(instance: DagsterInstance, run_id: str) -> list[str]:
    return [
        entry.user_message
        for entry in instance.all_logs(run_id)
        if entry.dagster_event is None and entry.level == logging.WARNING
    ]


def test_without_the_key_the_check_warns_and_does_not_block(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sample_keys(monkeypatch, sample_deployment)
    monkeypatch.delenv(CACHE_KEY)
    undecrypted = encrypted_in_database(sample_deployment.database)
    assert undecrypted > 20

    result, evaluation = run_pool_with_check(sample_deployment, tmp_path / "exports", instance)

    assert not evaluation.passed
    assert evaluation.severity == AssetCheckSeverity.WARN
    assert evaluation.description == (
        f"no leak found; but {undecrypted} stored database credential(s) could not be decrypted "
        f"({CACHE_KEY} is not set): their clear text was not looked for; set {CACHE_KEY}"
    )
    assert int(str(evaluation.metadata["undecrypted_credentials"].value)) == undecrypted
    # WARN does not block: the run succeeds and the downstream asset was materialized.
    assert result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == {proxy_list.key, AssetKey("after_the_pool")}
    (warning,) = warnings_logged(instance, result.run_id)
    assert (
        f"no_credential_leak on proxy_list {PARTITION}: {undecrypted} database credential(s) "
        f"could not be decrypted ({CACHE_KEY} is not set)"
    ) in warning
    assert f"Fix: set {CACHE_KEY} to the deployment's key" in warning
    # The export itself is as with the key (redact needs no clear text) and leaks nothing.
    published = (tmp_path / "exports" / "proxy_list" / f"dt={PARTITION}").iterdir()
    secrets = proxy_credentials(sample_deployment.database, sample_deployment.env_file)
    for path in published:
        assert not [s for s in secrets if s.encode() in path.read_bytes()], path


def test_with_the_keys_the_check_passes(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sample_keys(monkeypatch, sample_deployment)
    result, evaluation = run_pool_with_check(sample_deployment, tmp_path / "exports", instance)
    assert result.success
    assert evaluation.passed
    assert evaluation.description == "no leak found"
    assert int(str(evaluation.metadata["undecrypted_credentials"].value)) == 0
    assert not [w for w in warnings_logged(instance, result.run_id) if "no_credential_leak" in w]


PREVIOUS_KEY = "PROXYWHIRL_CACHE_KEY_PREVIOUS"


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        (CACHE_KEY, None, f"{CACHE_KEY} is not set"),
        (
            CACHE_KEY,
            "another",
            f"they do not decrypt with {CACHE_KEY} (nor {PREVIOUS_KEY}): "
            "another deployment's key, or a rotated one",
        ),
        (CACHE_KEY, "not-a-key", f"{CACHE_KEY} is not a Fernet key (url-safe base64 of 32 bytes)"),
        (
            PREVIOUS_KEY,
            "not-a-key",
            f"{PREVIOUS_KEY} is not a Fernet key (url-safe base64 of 32 bytes)",
        ),
    ],
)
def test_every_way_a_database_key_fails_is_a_gap(
    sample_deployment: SampleDeployment,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str | None,
    problem: str,
) -> None:
    sample_keys(monkeypatch, sample_deployment)
    if value is None:
        monkeypatch.delenv(variable)
    else:
        key = Fernet.generate_key().decode() if value == "another" else value
        monkeypatch.setenv(variable, key)
    known = known_credentials(sample_deployment.database, sample_deployment.config_path)
    (gap,) = known.gaps
    assert (gap.source, gap.variable, gap.problem) == ("database", variable, problem)
    assert gap.count == known.undecrypted == encrypted_in_database(sample_deployment.database)
    assert gap.message().startswith(f"{gap.count} database credential(s) could not be decrypted")
    assert f"Fix: set {variable} to the deployment's key" in gap.message()


def test_the_config_key_is_a_gap_too(
    sample_deployment: SampleDeployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample_keys(monkeypatch, sample_deployment)
    monkeypatch.delenv("PROXYWHIRL_KEY")
    (gap,) = known_credentials(sample_deployment.database, sample_deployment.config_path).gaps
    assert (gap.source, gap.variable, gap.problem) == (
        "config",
        "PROXYWHIRL_KEY",
        "PROXYWHIRL_KEY is not set",
    )
    assert gap.count > 0


# --- export-assets scan -------------------------------------------------------------------


@pytest.fixture
def clean_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "notes.txt").write_text("nothing secret here\n")
    return folder


def scan(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["scan", *args])
    return result.exit_code, result.stdout, result.stderr


def test_scan_with_no_known_credentials_exits_3(clean_folder: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "proxies.db"
    config = tmp_path / "nowhere" / "proxywhirl.toml"
    code, _, err = scan(str(clean_folder), "--db", str(missing), "--config", str(config))
    assert code == EXIT_INCOMPLETE == 3
    assert "scanned 1 file(s) for 0 known credential(s): 0 finding(s)" in err
    assert (
        f"error: incomplete scan: no credential was known: {missing} and {config} hold none "
        "(or could not be read), so only scheme://user:pass@ was looked for. Point --db and "
        "--config (or PROXYWHIRL_DB and PROXYWHIRL_CONFIG) at the deployment, or pass "
        "--allow-no-credentials if it really has none"
    ) in err
    assert not missing.parent.exists()  # nothing created
    code, _, err = scan(
        str(clean_folder), "--db", str(missing), "--config", str(config), "--allow-no-credentials"
    )
    assert code == 0, err
    assert "incomplete" not in err


def test_scan_without_the_key_exits_3_and_names_it(
    sample_deployment: SampleDeployment, clean_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample_keys(monkeypatch, sample_deployment)
    monkeypatch.delenv(CACHE_KEY)
    digest = hashlib.sha256(sample_deployment.database.read_bytes()).hexdigest()
    where = [
        "--db",
        str(sample_deployment.database),
        "--config",
        str(sample_deployment.config_path),
    ]
    undecrypted = encrypted_in_database(sample_deployment.database)
    code, out, err = scan(str(clean_folder), *where)
    assert code == EXIT_INCOMPLETE
    assert out == ""
    assert (
        f"warning: {undecrypted} database credential(s) could not be decrypted ({CACHE_KEY} is "
        "not set)"
    ) in err
    assert (
        f"error: incomplete scan: {undecrypted} stored credential(s) could not be decrypted, so "
        f"their clear text was not looked for: set {CACHE_KEY}, or pass --allow-undecrypted"
    ) in err
    assert scan(str(clean_folder), *where, "--allow-undecrypted")[0] == 0
    # The stored form is still looked for: a leaked token is a finding (exit 1 wins).
    with sqlite3.connect(sample_deployment.database) as connection:
        (stored,) = connection.execute(
            "SELECT password FROM proxy_identities WHERE password LIKE 'encrypted:%' LIMIT 1"
        ).fetchone()
    connection.close()
    (clean_folder / "leak.txt").write_text(f"token {stored[len('encrypted:') :]}\n")
    code, out, _ = scan(str(clean_folder), *where)
    assert code == 1
    assert "leak.txt:1: credential" in out
    assert hashlib.sha256(sample_deployment.database.read_bytes()).hexdigest() == digest


def test_scan_with_a_wrong_key_exits_3(
    sample_deployment: SampleDeployment, clean_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample_keys(monkeypatch, sample_deployment)
    monkeypatch.setenv(CACHE_KEY, Fernet.generate_key().decode())
    code, _, err = scan(
        str(clean_folder),
        "--db",
        str(sample_deployment.database),
        "--config",
        str(sample_deployment.config_path),
    )
    assert code == EXIT_INCOMPLETE
    assert f"they do not decrypt with {CACHE_KEY}" in err
    assert f"set {CACHE_KEY}, or pass --allow-undecrypted" in err


def test_scan_with_the_keys_exits_0(
    sample_deployment: SampleDeployment, clean_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample_keys(monkeypatch, sample_deployment)
    code, out, err = scan(
        str(clean_folder),
        "--db",
        str(sample_deployment.database),
        "--config",
        str(sample_deployment.config_path),
    )
    assert code == 0, err
    assert out == ""
    assert "warning" not in err
    assert "incomplete" not in err
    assert ": 0 finding(s)" in err
