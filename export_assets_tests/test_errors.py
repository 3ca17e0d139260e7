"""Expected failures are final, one-line Failures; transient ones are retried.

Source, config, destination and key errors fail the step at once with a ``Failure`` whose
description is the error's one line (what the UI shows); a locked database and S3's 5xx,
throttling and timeouts propagate as they are, for the asset's retry policy.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from dagster import (
    AssetsDefinition,
    DagsterEventType,
    DagsterInstance,
    ExecuteInProcessResult,
    Failure,
    RetryPolicy,
    asset,
    materialize,
)

from export_assets.defs.exports.config import ExportConfig
from export_assets.defs.exports.proxy_list import proxy_list
from export_assets.defs.partitions import daily_partitions
from export_assets.defs.resources.io_manager import ExportFieldsError, selected_schema
from export_assets.defs.retries import fail_fast_on_permanent_errors, is_transient
from export_assets.lib.exports.destinations import DestinationError, LocalDestination
from export_assets.lib.sample import SampleDeployment
from export_assets.lib.security.crypto import CredentialKeyError, export_cipher_for_writing
from export_assets.lib.source.database import SourceError, SourceSnapshot, connect_read_only
from export_assets_tests.conftest import configured, export_resources

DAY = "2026-11-19"


@pytest.fixture
def locked_database(tmp_path: Path) -> Iterator[Path]:
    """A SQLite file another connection holds an exclusive lock on, as a writer would."""
    path = tmp_path / "locked.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE t (x INTEGER)")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    yield path
    writer.execute("ROLLBACK")
    writer.close()


def locked_read(path: Path) -> sqlite3.OperationalError:
    reader = sqlite3.connect(path, timeout=0)
    try:
        reader.execute("SELECT * FROM t").fetchall()
    except sqlite3.OperationalError as exc:
        return exc
    finally:
        reader.close()
    raise AssertionError("the read was not blocked")


def raised(action: object) -> BaseException:
    try:
        action()  # type: ignore[operator]
    except BaseException as exc:
        return exc
    raise AssertionError(f"{action} raised nothing")


def s3_error(code: str, status: int) -> ClientError:
    """The error botocore raises for an S3 response with this code and HTTP status."""
    response: Any = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "PutObject")


def test_locked_databases_and_s3_hiccups_are_transient(locked_database: Path) -> None:
    locked = locked_read(locked_database)
    assert "locked" in str(locked)
    wrapped = SourceError(f"ProxyWhirl database {locked_database} stayed locked")
    wrapped.__cause__ = locked
    for error in [
        locked,
        wrapped,
        s3_error("InternalError", 500),
        s3_error("ServiceUnavailable", 503),
        s3_error("SlowDown", 503),
        s3_error("RequestTimeout", 400),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:9/b"),
        ConnectTimeoutError(endpoint_url="http://127.0.0.1:9/b"),
        TimeoutError("timed out"),
    ]:
        assert is_transient(error), error
        # Let through, as it is, for the retry policy.
        with pytest.raises(type(error)), fail_fast_on_permanent_errors():
            raise error


def test_source_config_destination_and_key_errors_are_permanent(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    (tmp_path / "foreign.db").write_bytes(b"hello, not sqlite" * 64)
    errors = {
        "missing database": raised(lambda: connect_read_only(tmp_path / "absent.db", 100)),
        "foreign database": raised(
            lambda: SourceSnapshot(tmp_path / "foreign.db", busy_timeout_ms=100, batch_rows=1)
        ),
        "config": raised(lambda: ExportConfig(gzip_level=42)),
        "fields": raised(lambda: selected_schema(pa.schema([("url", pa.string())]), ("x",), "a")),
        "destination": raised(lambda: LocalDestination(a_file / "exports").write_bytes("k", b"")),
        "key": raised(lambda: export_cipher_for_writing({})),
        "s3 access": s3_error("AccessDenied", 403),
        "s3 bucket": s3_error("NoSuchBucket", 404),
        "s3 endpoint": EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
    }
    kinds = {name: type(error) for name, error in errors.items()}
    assert kinds["missing database"] is SourceError
    assert kinds["foreign database"] is SourceError
    assert issubclass(kinds["destination"], DestinationError)
    assert kinds["key"] is CredentialKeyError
    assert kinds["fields"] is ExportFieldsError
    for name, error in errors.items():
        assert not is_transient(error), name
        with pytest.raises(Failure) as final, fail_fast_on_permanent_errors():
            raise error
        assert final.value.allow_retries is False, name
        assert final.value.description == str(error).strip().splitlines()[0], name
        assert "\n" not in (final.value.description or "")


def run_proxy_list(
    sample: SampleDeployment,
    exports: Path,
    instance: DagsterInstance,
    database: Path | None = None,
    **config: object,
) -> ExecuteInProcessResult:
    return materialize(
        [configured(proxy_list, config)],
        partition_key=DAY,
        instance=instance,
        resources=export_resources(database or sample.database, exports),
        raise_on_error=False,
    )


def final_failure(result: ExecuteInProcessResult) -> str:
    """The failed step's Failure description; asserts no retry was scheduled."""
    assert not result.success
    events = [e.event_type for e in result.all_events]
    assert DagsterEventType.STEP_UP_FOR_RETRY not in events
    (failure,) = result.get_step_failure_events()
    user = failure.step_failure_data.user_failure_data
    assert user is not None
    assert user.description is not None
    return user.description


def test_a_missing_database_is_a_final_failure_naming_it(
    sample_deployment: SampleDeployment, tmp_path: Path, instance: DagsterInstance
) -> None:
    absent = tmp_path / "absent.db"
    result = run_proxy_list(sample_deployment, tmp_path / "out", instance, database=absent)
    assert final_failure(result) == (
        f"ProxyWhirl database {absent} does not exist: set PROXYWHIRL_DB to ProxyWhirl's "
        "proxies.db (or write a sample with `export-assets sample-data --out DIR`)"
    )
    assert not absent.exists()
    assert not (tmp_path / "out").exists()


def test_a_missing_export_key_is_a_final_failure(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EXPORT_ENCRYPTION_KEY", raising=False)
    monkeypatch.delenv("EXPORT_PASSWORD", raising=False)
    result = run_proxy_list(sample_deployment, tmp_path / "out", instance, credentials="encrypt")
    assert final_failure(result) == (
        "credentials policy encrypt needs EXPORT_ENCRYPTION_KEY (a Fernet key) or "
        "EXPORT_PASSWORD in the environment; neither is set"
    )
    assert not list((tmp_path / "out").rglob("_manifest.json"))


def test_an_unwritable_destination_is_a_final_failure(
    sample_deployment: SampleDeployment, tmp_path: Path, instance: DagsterInstance
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    result = run_proxy_list(sample_deployment, a_file / "exports", instance)
    description = final_failure(result)
    assert description.startswith(f"cannot create export folder {a_file / 'exports'}")
    assert a_file.read_text() == "not a folder"


def test_the_retry_policy_retries_a_locked_database_and_nothing_else(
    locked_database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    attempts: list[str] = []

    def reading(database: Path) -> AssetsDefinition:
        # An export step's shape: its work inside fail_fast_on_permanent_errors, under a
        # retry policy (no delay between tries here).
        @asset(
            name=f"reads_{database.stem}",
            partitions_def=daily_partitions,
            retry_policy=RetryPolicy(max_retries=2, delay=0),
        )
        def reads(context) -> None:  # type: ignore[no-untyped-def]  # Dagster reads it
            attempts.append(context.partition_key)
            with fail_fast_on_permanent_errors():
                connect_read_only(database, 0).execute("SELECT * FROM t").fetchall()

        return reads

    locked = materialize(
        [reading(locked_database)], partition_key=DAY, instance=instance, raise_on_error=False
    )
    assert not locked.success
    assert len(attempts) == 3  # the first try and two retries
    attempts.clear()
    missing = materialize(
        [reading(tmp_path / "absent.db")],
        partition_key=DAY,
        instance=instance,
        raise_on_error=False,
    )
    assert final_failure(missing).startswith(f"ProxyWhirl database {tmp_path / 'absent.db'} ")
    assert len(attempts) == 1
