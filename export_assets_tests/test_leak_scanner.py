"""The leak scanner: a planted credential stops the publish in every format; the sample passes."""

# No "from __future__ import annotations": Dagster reads the test asset's annotations.

import gzip
import shutil
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from dagster import (
    AssetCheckEvaluation,
    AssetsDefinition,
    DagsterEventType,
    DagsterInstance,
    ExecuteInProcessResult,
    materialize,
)

from export_assets.cli import main
from export_assets.defs.exports import EXPORT_ASSETS, proxy_list
from export_assets.defs.exports.daily import NO_LEAK, DayContext, daily_export
from export_assets.defs.resources.store import ExportStore
from export_assets.lib.exports.export import DocumentExport, DocumentOptions
from export_assets.lib.sample import SampleDeployment
from export_assets.lib.security import leaks
from export_assets.lib.security.leaks import LeakScanner, known_credentials, mask_secret
from export_assets_tests import s3_server
from export_assets_tests.conftest import configured, export_resources, proxy_credentials
from export_assets_tests.test_round_trip import EXPORT_KEY, PARTITION, sample_keys


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, sample_deployment: SampleDeployment) -> pytest.MonkeyPatch:
    sample_keys(monkeypatch, sample_deployment)
    monkeypatch.setenv("EXPORT_ENCRYPTION_KEY", EXPORT_KEY)
    return monkeypatch


def a_password(sample: SampleDeployment) -> str:
    """A clear-text password of the sample (decrypted), the kind of secret that must not leak."""
    secrets = proxy_credentials(sample.database, sample.env_file)
    return sorted(s for s in secrets if len(s) == 20)[0]


def test_known_credentials_are_decrypted_from_database_and_config(
    sample_deployment: SampleDeployment, env: pytest.MonkeyPatch
) -> None:
    known = known_credentials(sample_deployment.database, sample_deployment.config_path)
    assert (
        proxy_credentials(sample_deployment.database, sample_deployment.env_file) <= known.secrets
    )
    assert sample_deployment.cache_encryption_key in known.secrets  # keys are secrets too
    assert not known.notes


def test_text_findings_and_masking() -> None:
    scanner = LeakScanner({"s3cr3t-'pa\"ss"})
    assert list(scanner.scan_text("x s3cr3t-'pa\"ss y")) == [
        f"credential {mask_secret('s3cr3t-' + chr(39) + 'pa' + chr(34) + 'ss')}"
    ]
    assert list(scanner.scan_text('"s3cr3t-\'pa""ss"'))  # CSV's doubled quote
    assert list(scanner.scan_text('"s3cr3t-\'pa\\"ss"'))  # JSON's escape
    found = list(scanner.scan_text("see socks5://alice:hunter22@10.0.0.1:1080 now"))
    assert found == ["URL with a password: socks5://a******* (5 chars)"]
    # What a finding says is not a finding itself (it reaches logs and check results).
    assert list(LeakScanner(set()).scan_text(found[0])) == []
    assert not list(scanner.scan_text("see http://***:***@10.0.0.1:80 and ${PROXYWHIRL_CRED_X}"))
    assert "hunter22" not in found[0]
    assert "s3cr3t" not in mask_secret("s3cr3t-pass")


def test_findings_name_the_line_and_row_far_into_a_large_file(tmp_path: Path) -> None:
    secret = "hunter2-Zq9!x"
    rows = [f"{n},http://10.0.{n % 250}.1:8080,ok" for n in range(1, 200_001)]
    rows[149_999] += f",{secret}"  # line 150,000: several MiB in, past the first chunks
    rows[199_999] += f",{secret}"
    csv_path = tmp_path / "big.csv.gz"
    csv_path.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    parquet_path = tmp_path / "big.parquet"
    values = [f"note {n}\nsecond line" for n in range(200_000)]
    values[123_456] = f"leaked {secret}"
    pq.write_table(pa.table({"id": list(range(200_000)), "note": values}), parquet_path)

    scanner = LeakScanner({secret})
    found = scanner.scan_path(csv_path) + scanner.scan_path(parquet_path)

    assert [(finding.line, finding.what) for finding in found] == [
        ("150000", f"credential {mask_secret(secret)}"),
        ("200000", f"credential {mask_secret(secret)}"),
        ("row 123457 column note", f"credential {mask_secret(secret)}"),
    ]


def test_large_text_is_prefiltered_without_missing_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Text of PREFILTER_MIN_BYTES or more is asked of Hyperscan first: every form of every
    secret, anywhere in it (a NUL byte inside one, one at the very end), is found as the
    automaton alone finds it, and clean text never reaches the automaton."""
    secrets = {f"pw-{n:04d}-Zq9!\"x'" for n in range(1500)} | {"nul\x00inside", "at-the-end"}
    scanner = LeakScanner(secrets)
    filler = b"1,http://10.0.0.1:8080,2026-11-20T00:00:00Z,true,12.5,,\n" * 2000
    assert len(filler) >= leaks.PREFILTER_MIN_BYTES
    assert not scanner.may_hold_secret(filler)
    texts = [
        filler + form.encode("utf-8") + b"," + filler
        for secret in [*sorted(secrets)[::97], "nul\x00inside"]
        for form in leaks._variants(secret)
    ]
    texts.append(filler + b"at-the-end")
    prefiltered = [scanner.leaks(text) for text in texts]
    assert all(prefiltered)
    assert prefiltered[-1] == [(len(filler), f"credential {mask_secret('at-the-end')}")]

    monkeypatch.setattr(leaks._Prefilter, "matches", lambda *_: True)  # the automaton alone
    assert [scanner.leaks(text) for text in texts] == prefiltered


def test_a_prefilter_compiled_again_after_leaving_the_cache_still_finds_secrets() -> None:
    """A process keeps a few sets of secrets' databases; one dropped and compiled again is
    a new database, and the thread that scanned with the old one scans with the new one."""
    filler = b"1,http://10.0.0.1:8080,ok\n" * 4000
    first = LeakScanner({"first-secret-1"})
    assert first.leaks(filler + b"first-secret-1") == [
        (len(filler), f"credential {mask_secret('first-secret-1')}")
    ]
    for n in range(leaks._PREFILTERS_KEPT + 1):  # push the first set's database out
        LeakScanner({f"other-secret-{n}"}).leaks(filler)
    assert first._prefilter is not None
    assert not first._prefilter.compiled
    assert not first.may_hold_secret(filler)
    assert first.leaks(filler + b"first-secret-1") == [
        (len(filler), f"credential {mask_secret('first-secret-1')}")
    ]


@pytest.fixture
def planted(sample_deployment: SampleDeployment, tmp_path: Path) -> tuple[Path, str]:
    """A copy of the sample whose free-text source column carries another proxy's password."""
    root = tmp_path / "planted"
    shutil.copytree(sample_deployment.root, root)
    secret = a_password(sample_deployment)
    connection = sqlite3.connect(root / "proxies.db")
    connection.execute(
        "UPDATE proxy_identities SET source = ?"
        " WHERE url = (SELECT min(url) FROM proxy_identities)",
        (f"scraped from a paste: {secret}",),
    )
    connection.commit()
    connection.close()
    return root, secret


def failure_of(result: ExecuteInProcessResult) -> str:
    """The failed step's user-facing message."""
    assert not result.success
    [failure] = result.get_step_failure_events()
    error = failure.step_failure_data.error
    assert error is not None
    while error.cause is not None and "credential leak" not in error.message:
        error = error.cause
    return error.message


def published(exports: Path) -> dict[str, bytes]:
    """Every file under ``exports`` (relative path: bytes)."""
    return {
        p.relative_to(exports).as_posix(): p.read_bytes() for p in exports.rglob("*") if p.is_file()
    }


@pytest.mark.parametrize(
    ("fmt", "compression", "where"),
    [
        ("csv", "none", ":2:"),
        ("jsonl", "gzip", ":1:"),
        ("parquet", "none", ":row 1 column source:"),
        ("xlsx", "none", ":row 1 column source:"),
    ],
)
def test_a_planted_credential_stops_the_publish_in_every_format(
    sample_deployment: SampleDeployment,
    planted: tuple[Path, str],
    tmp_path: Path,
    instance: DagsterInstance,
    env: pytest.MonkeyPatch,
    fmt: str,
    compression: str,
    where: str,
) -> None:
    root, secret = planted
    exports = tmp_path / "exports"
    asset = configured(proxy_list, {"format": fmt, "compression": compression})
    # The clean deployment's export of the day, then the same day with the planted secret.
    clean = materialize(
        [asset],
        partition_key=PARTITION,
        instance=instance,
        resources=export_resources(
            sample_deployment.database, exports, config_path=str(sample_deployment.config_path)
        ),
    )
    assert clean.success
    before = published(exports)

    result = materialize(
        [asset],
        partition_key=PARTITION,
        instance=instance,
        resources=export_resources(
            root / "proxies.db", exports, config_path=str(root / "proxywhirl.toml")
        ),
        raise_on_error=False,
    )

    message = failure_of(result)
    assert f"proxy_list {PARTITION}: 1 credential leak(s)" in message
    assert f"proxy_list/dt={PARTITION}/proxy_list-{PARTITION}" in message
    assert where in message
    assert mask_secret(secret) in message
    assert "nothing was published" in message
    assert secret not in message
    # Nothing reached the destination: the day keeps its clean version, byte for byte.
    assert published(exports) == before
    assert len(result.get_step_failure_events()) == 1  # a leak is never retried
    assert secret not in str(instance.all_logs(result.run_id))


def chatty(secret: str) -> AssetsDefinition:
    """An export that writes ``secret`` in the run's log: the bug the check must catch."""

    @daily_export()
    def chatty_export(context: DayContext) -> DocumentExport:
        context.log.info(f"connecting with {secret}")
        return DocumentExport(document={"ok": True}, options=DocumentOptions(), source={})

    return chatty_export


def test_the_run_event_log_is_scanned(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    env: pytest.MonkeyPatch,
) -> None:
    secret = a_password(sample_deployment)

    chatty_export = chatty(secret)
    result = materialize(
        [chatty_export],
        partition_key=PARTITION,
        instance=instance,
        raise_on_error=False,
        resources=export_resources(
            sample_deployment.database, tmp_path, config_path=str(sample_deployment.config_path)
        ),
    )
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == NO_LEAK]
    assert not evaluation.passed
    assert not result.success  # blocking
    assert "event log" in str(evaluation.metadata["details"].value)


def test_a_leak_in_the_event_log_of_a_ranged_run_blocks_and_is_recorded_per_day(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    env: pytest.MonkeyPatch,
) -> None:
    secret = a_password(sample_deployment)

    chatty_export = chatty(secret)
    days = ["2026-11-19", PARTITION]
    result = materialize(
        [chatty_export],
        instance=instance,
        raise_on_error=False,
        tags={
            "dagster/asset_partition_range_start": days[0],
            "dagster/asset_partition_range_end": days[-1],
        },
        resources=export_resources(
            sample_deployment.database, tmp_path, config_path=str(sample_deployment.config_path)
        ),
    )
    # Blocking as in a one-day run: the step fails once, never retried, naming the check.
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert failure.step_failure_data.error is not None
    message = str(failure.step_failure_data.error.message)
    assert "no_credential_leak of 2026-11-19" in message
    assert secret not in message  # the finding is named, masked
    # Each day's result is recorded against its own partition.
    logged = instance.all_logs(result.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    leaks = [
        data
        for entry in logged
        if entry.dagster_event is not None
        and isinstance(data := entry.dagster_event.event_specific_data, AssetCheckEvaluation)
        and data.check_name == NO_LEAK
    ]
    assert sorted(e.partition or "" for e in leaks) == days
    assert not any(e.passed for e in leaks)


@pytest.mark.parametrize("policy", ["redact", "encrypt", "reference"])
def test_every_export_of_the_sample_passes(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    env: pytest.MonkeyPatch,
    policy: str,
) -> None:
    result = materialize(
        [
            configured(a, {"credentials": policy})
            if a.key.path[-1] in ("proxy_list", "pool_config")
            else a
            for a in EXPORT_ASSETS
        ],
        partition_key=PARTITION,
        instance=instance,
        resources=export_resources(
            sample_deployment.database,
            tmp_path,
            config_path=str(sample_deployment.config_path),
            log_dir=str(sample_deployment.log_dir),
        ),
    )
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    leaks = [e for e in evaluations if e.check_name == NO_LEAK]
    assert len(leaks) == len(EXPORT_ASSETS)
    assert all(e.passed for e in leaks)
    assert all(int(str(e.metadata["known_credentials"].value)) > 20 for e in leaks)
    cli = CliRunner().invoke(
        main,
        [
            "scan",
            str(tmp_path),
            "--db",
            str(sample_deployment.database),
            "--config",
            str(sample_deployment.config_path),
        ],
    )
    assert cli.exit_code == 0, cli.output
    assert "0 finding(s)" in cli.output


@pytest.mark.parametrize(("fmt", "where"), [("parquet", "column source"), ("csv", ".csv.gz:2:")])
def test_a_leak_reaches_no_s3_object(
    planted: tuple[Path, str],
    instance: DagsterInstance,
    env: pytest.MonkeyPatch,
    moto_server: s3_server.MotoServer,
    fmt: str,
    where: str,
) -> None:
    root, secret = planted
    client = moto_server.client()
    client.create_bucket(Bucket=f"leaks-{fmt}")
    store = ExportStore(destination=f"s3://leaks-{fmt}/exports", s3=moto_server.resource())
    result = materialize(
        [configured(proxy_list, {"format": fmt})],
        partition_key=PARTITION,
        instance=instance,
        resources=export_resources(
            root / "proxies.db", "unused", store=store, config_path=str(root / "proxywhirl.toml")
        ),
        raise_on_error=False,
    )
    message = failure_of(result)
    assert where in message
    assert mask_secret(secret) in message
    listed = client.list_objects_v2(Bucket=f"leaks-{fmt}").get("Contents", [])
    assert [o["Key"] for o in listed if not o["Key"].endswith(".lease")] == []
    assert client.list_multipart_uploads(Bucket=f"leaks-{fmt}").get("Uploads", []) == []
