"""Before writing: the size guard; while running: transient faults retry, permanent ones do not."""

# No "from __future__ import annotations": Dagster reads the test asset's context annotation.

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from dagster import (
    AssetExecutionContext,
    DagsterEventType,
    DagsterInstance,
    RetryPolicy,
    asset,
    materialize,
)

from export_assets.defs.exports import validation_events
from export_assets.defs.operations.failures import error_message, user_error
from export_assets.defs.resources.io_manager import check_room
from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.defs.retries import fail_fast_on_permanent_errors, is_transient
from export_assets.lib.exports.destinations import DestinationError, LocalDestination
from export_assets.lib.sample import SampleDeployment
from export_assets.lib.source.database import SourceError
from export_assets_tests.conftest import export_resources

PARTITION = "2026-11-19"


def failure_of(instance: DagsterInstance, run_id: str) -> tuple[str, str]:
    [event] = instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
    assert event.dagster_event is not None
    error = event.dagster_event.step_failure_data.error
    assert error is not None
    error = user_error(error)
    return error.cls_name or "", error_message(error)


def retries_of(instance: DagsterInstance, run_id: str) -> int:
    return len(instance.all_logs(run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY))


def test_an_export_over_export_max_bytes_is_refused_before_writing(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPORT_MAX_BYTES", "10_000")
    exports = tmp_path / "exports"
    result = materialize(
        [validation_events],
        partition_key=PARTITION,
        instance=instance,
        raise_on_error=False,
        resources=export_resources(sample_deployment.database, exports),
    )
    assert not result.success
    kind, message = failure_of(instance, result.run_id)
    assert kind == "ExportTooLargeError"
    assert message.startswith(f"validation_events {PARTITION} would be about ")
    assert "over EXPORT_MAX_BYTES=10,000: select fewer fields or rows, or raise " in message
    assert "nothing was written" in message
    assert not exports.exists()
    assert retries_of(instance, result.run_id) == 0  # permanent: failed at once

    monkeypatch.setenv("EXPORT_MAX_BYTES", "100000000")
    assert materialize(
        [validation_events],
        partition_key=PARTITION,
        instance=instance,
        resources=export_resources(sample_deployment.database, exports),
    ).success


def test_a_bad_export_max_bytes_says_how_to_write_it(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPORT_MAX_BYTES", "5GB")
    exports = tmp_path / "exports"
    result = materialize(
        [validation_events],
        partition_key=PARTITION,
        instance=instance,
        raise_on_error=False,
        resources=export_resources(sample_deployment.database, exports),
    )
    assert failure_of(instance, result.run_id) == (
        "ValueError",
        "EXPORT_MAX_BYTES='5GB' is not a number of bytes: write e.g. 5000000000, or unset it "
        "for no limit",
    )
    assert not exports.exists()


def test_a_destination_without_room_is_refused(tmp_path: Path) -> None:
    destination = LocalDestination(tmp_path / "not" / "yet" / "made")
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(DestinationError, match="no space left on the device of") as raised:
        check_room(destination, "proxy_list", PARTITION, rows=free, row_bytes=2.0)
    assert "free space or set EXPORT_DESTINATION elsewhere; nothing was written" in str(
        raised.value
    )
    assert not (tmp_path / "not").exists()
    check_room(destination, "proxy_list", PARTITION, rows=10, row_bytes=100.0)  # fits


def test_a_locked_database_is_retried_and_a_missing_table_is_not(
    sample_deployment: SampleDeployment, tmp_path: Path, instance: DagsterInstance
) -> None:
    database = tmp_path / "proxies.db"
    shutil.copy(sample_deployment.database, database)
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("PRAGMA journal_mode=DELETE")  # readers wait for an exclusive writer
    writer.execute("BEGIN EXCLUSIVE")  # ProxyWhirl mid-write
    source = ProxyWhirlSource(database=str(database), busy_timeout_ms=50)
    attempts: list[int] = []
    writers = [writer]

    @asset(retry_policy=RetryPolicy(max_retries=2))
    def reads_proxywhirl(context: AssetExecutionContext) -> None:
        attempts.append(context.retry_number)
        try:
            with fail_fast_on_permanent_errors():
                source.open_snapshot().close()
        finally:
            for finished in writers:  # the writer finishes after the first attempt
                finished.execute("COMMIT")
            writers.clear()

    try:
        result = materialize([reads_proxywhirl], instance=instance)
    finally:
        writer.close()
    assert result.success
    assert attempts == [0, 1]

    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    attempts.clear()
    source = ProxyWhirlSource(database=str(other))
    result = materialize([reads_proxywhirl], instance=instance, raise_on_error=False)
    assert not result.success
    assert attempts == [0]
    kind, message = failure_of(instance, result.run_id)
    assert kind == "SourceError"
    assert message == (
        f"{other} has no table proxy_identities: is PROXYWHIRL_DB a ProxyWhirl database?"
    )


def _client_error(code: str, status: int) -> ClientError:
    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "PutObject")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (_client_error("SlowDown", 503), True),
        (_client_error("InternalError", 500), True),
        (_client_error("NoSuchKey", 404), False),
        (sqlite3.OperationalError("database is locked"), True),
        (sqlite3.OperationalError("no such column: x"), False),
        (ConnectionResetError("reset by peer"), True),
        (DestinationError("bucket b does not exist"), False),
        (ValueError("fields: unknown"), False),
    ],
)
def test_which_errors_are_transient(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_a_source_error_caused_by_a_lock_is_transient() -> None:
    wrapped = SourceError("ProxyWhirl database stayed locked")
    wrapped.__cause__ = sqlite3.OperationalError("database is locked")
    assert is_transient(wrapped)
    assert not is_transient(SourceError("no table validation_results"))
