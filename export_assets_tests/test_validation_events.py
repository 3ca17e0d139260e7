"""validation_events through Dagster: exactly the results of the day, in id order, filtered,
masked, and row for row the validation history when every day is exported.

Files are read back with independent readers (gzip + json, gzip + csv, pyarrow.parquet).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize

from export_assets.defs.exports.validation_events import ValidationEventsConfig, validation_events
from export_assets.defs.operations.failures import error_message, user_error
from export_assets.lib.exports.manifest import ExportManifest
from export_assets.lib.sample import SampleDeployment
from export_assets.lib.security.credentials import mask_url_credentials
from export_assets.lib.source import SourceError, SourceSnapshot
from export_assets.lib.source.validations import (
    VALIDATION_EVENTS_SCHEMA,
    id_range_between,
    read_ahead,
    validation_events_query,
    validation_id_range,
)
from export_assets.lib.source.validations import validation_events as validation_events_source
from export_assets_tests.conftest import configured, export_resources, request_config, requested
from export_assets_tests.handmade import HandmadeDatabase

DAY = "2026-11-01"
A = "http://198.51.100.1:8080"
B = "socks5://198.51.100.2:1080"
WITH_CREDENTIALS = "http://carol:hunter2@198.51.100.3:3128"  # a writer that kept them
HOSTILE = '=HYPERLINK("http://evil","x"),\r\n"quoted"\x07\t\\ \u2028 Привет 代理 🧪 \x00end'
LEAK = "407 Proxy Authentication Required for http://alice:pa55w0rd@198.51.100.2:1080 (x)"

# (id, proxy_url, validated_at, is_valid, response_time_ms, error_type, error_message)
# in insertion order: ids 1..8. Id 6 is a D+1 row inside the id range of D's rows, and
# id 7 a row of D recorded after it: ids need not follow time.
CHECKS: list[tuple[str, str, bool, float | None, str | None, str | None]] = [
    (A, "2026-10-31 23:59:59.999999", True, 100.0, None, None),  # 1: D-1
    (A, "2026-11-01 00:00:00.000000", True, 120.5, None, None),  # 2: D's first instant
    (B, "2026-11-01 12:00:00.000000", False, None, "timeout", LEAK),  # 3
    (A, "2026-11-01 23:59:59.999999", False, None, "proxy_error", HOSTILE),  # 4: D's last
    (B, "2026-11-01 13:00:00.000000", True, 80.25, None, None),  # 5
    (B, "2026-11-02 00:00:00.000000", True, 70.0, None, None),  # 6: D+1's first instant
    (
        WITH_CREDENTIALS,
        "2026-11-01 06:00:00.000000",
        False,
        None,
        "ssl_error",
        "certificate verify failed for https://u:p@secure.example/",
    ),  # 7
    (A, "2026-11-03 10:00:00.000000", True, 60.0, None, None),  # 8: D+2
]
DAY_IDS = [2, 3, 4, 5, 7]
SECRETS = ("alice", "pa55w0rd", "carol", "hunter2", "u:p@")


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "proxies.db"
    path.parent.mkdir()
    with HandmadeDatabase(path) as db:
        db.add_proxy(A)
        db.add_proxy(B, country_code="DE")
        for check in CHECKS:
            db.add_check(*check)
    return path


def run(
    database: Path,
    exports: Path,
    instance: DagsterInstance,
    partition: str = DAY,
    **config: Any,
) -> Path:
    """Materialize one partition; the folder it was written to."""
    result = materialize(
        [configured(validation_events, config)],
        partition_key=partition,
        instance=instance,
        resources=export_resources(database, exports),
    )
    assert result.success
    return exports / "validation_events" / f"dt={partition}"


def read_jsonl_gz(folder: Path) -> list[dict[str, Any]]:
    data = gzip.decompress(next(folder.glob("*.jsonl.gz")).read_bytes())
    return [json.loads(line) for line in data.split(b"\n") if line]


def manifest(folder: Path) -> ExportManifest:
    return ExportManifest.from_json((folder / "_manifest.json").read_bytes())


def expected_row(row_id: int) -> dict[str, Any]:
    """The JSON object a source row becomes: credentials masked, time in ISO UTC."""
    url, validated_at, is_valid, response_time_ms, error_type, message = CHECKS[row_id - 1]
    return {
        "id": row_id,
        "proxy_url": mask_url_credentials(url),
        "validated_at": validated_at.replace(" ", "T") + "Z",
        "is_valid": is_valid,
        "response_time_ms": response_time_ms,
        "error_type": error_type,
        "error_message": None if message is None else mask_url_credentials(message),
    }


def test_exports_exactly_the_day_in_id_order_masked_and_intact(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    folder = run(database, tmp_path / "exports", instance, format="jsonl")

    assert sorted(p.name for p in folder.iterdir()) == [
        "_manifest.json",
        f"validation_events-{DAY}.jsonl.gz",
    ]
    rows = read_jsonl_gz(folder)
    assert [row["id"] for row in rows] == DAY_IDS  # 23:59:59.999999 in, 00:00 of D+1 out
    assert rows == [expected_row(row_id) for row_id in DAY_IDS]
    by_id = {row["id"]: row for row in rows}
    assert by_id[4]["error_message"] == HOSTILE  # every byte of a hostile message kept
    assert by_id[3]["error_message"] == (
        "407 Proxy Authentication Required for http://***:***@198.51.100.2:1080 (x)"
    )
    assert by_id[7]["proxy_url"] == "http://***:***@198.51.100.3:3128"
    assert (
        by_id[7]["error_message"] == "certificate verify failed for https://***:***@secure.example/"
    )
    text = gzip.decompress(next(folder.glob("*.gz")).read_bytes()).decode()
    for secret in SECRETS:
        assert secret not in text

    facts = manifest(folder)
    assert facts.total_rows == len(DAY_IDS)
    assert [column["name"] for column in facts.columns] == VALIDATION_EVENTS_SCHEMA.names
    assert facts.source == {
        "database": str(database),
        "day": DAY,
        "validation_results_min_id": 2,
        "validation_results_max_id": 7,
    }


def test_default_csv_has_the_schema_header_iso_times_and_neutralised_formulas(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    folder = run(database, tmp_path / "exports", instance)
    with gzip.open(folder / f"validation_events-{DAY}.csv.gz", "rt", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == VALIDATION_EVENTS_SCHEMA.names
    assert [row["id"] for row in rows] == [str(i) for i in DAY_IDS]
    assert rows[0]["validated_at"] == "2026-11-01T00:00:00.000000Z"
    assert rows[0]["is_valid"] == "true"
    assert rows[0]["response_time_ms"] == "120.5"
    assert rows[1]["response_time_ms"] == ""
    assert rows[2]["error_message"] == "'" + HOSTILE  # formula neutralised, the rest intact


FILTER_CASES: list[tuple[dict[str, Any], list[int]]] = [
    ({"is_valid": False}, [3, 4, 7]),
    ({"is_valid": True}, [2, 5]),
    ({"proxy_urls": [B]}, [3, 5]),
    ({"proxy_urls": [WITH_CREDENTIALS, "http://203.0.113.1:1"]}, [7]),
    ({"error_types": ["timeout", "ssl_error"]}, [3, 7]),
    ({"error_types": ["dns_error"]}, []),
    ({"proxy_urls": [A, B], "is_valid": False}, [3, 4]),
    ({"proxy_urls": [A, B], "is_valid": False, "error_types": ["proxy_error"]}, [4]),
    ({"proxy_urls": [A], "is_valid": True, "error_types": ["timeout"]}, []),
]


@pytest.mark.parametrize(("config", "ids"), [FILTER_CASES[i] for i in (0, 2, 4, 7)])
def test_filters_each_and_combined_through_dagster(
    database: Path,
    tmp_path: Path,
    instance: DagsterInstance,
    config: dict[str, Any],
    ids: list[int],
) -> None:
    folder = run(database, tmp_path / "exports", instance, format="jsonl", **config)
    assert read_jsonl_gz(folder) == [expected_row(row_id) for row_id in ids]
    facts = manifest(folder)
    assert facts.total_rows == len(ids)
    assert facts.source["validation_results_min_id"] == min(ids)
    assert facts.source["validation_results_max_id"] == max(ids)


@pytest.mark.parametrize(("config", "ids"), FILTER_CASES)
def test_filters_select_in_the_source(
    database: Path, config: dict[str, Any], ids: list[int]
) -> None:
    filters = ValidationEventsConfig(**config).filters()
    day = date.fromisoformat(DAY)
    with SourceSnapshot(database, busy_timeout_ms=1000, batch_rows=2) as snapshot:
        id_range = validation_id_range(snapshot, day, filters)
        read = [
            row["id"]
            for batch in validation_events_source(snapshot, day, id_range, filters)
            for row in batch.to_pylist()
        ]
    assert read == ids
    assert id_range == ((min(ids), max(ids)) if ids else None)


@pytest.mark.parametrize("chunk_rows", [1, 2, 1000])
def test_the_id_range_is_found_in_two_halves_side_by_side(tmp_path: Path, chunk_rows: int) -> None:
    """The morning and the afternoon are scanned on two connections: ids out of time
    order on both sides of noon, rows at the last instant of the morning and the first of
    the afternoon, and a window of several days split at its middle day, all as one scan
    of the whole span finds them; the twin connection's reads count as the snapshot's."""
    path = tmp_path / "proxies.db"
    times = [
        "2026-11-01 13:00:00.000000",  # 1: the smallest id, after noon
        "2026-11-02 12:00:00.000000",  # 2: the next day's noon
        "2026-11-01 11:59:59.999999",  # 3: the morning's last instant
        "2026-11-01 12:00:00.000000",  # 4: the afternoon's first
        "2026-10-31 23:00:00.000000",  # 5: before the window
        "2026-11-01 00:00:00.000000",  # 6
        "2026-11-03 23:59:59.999999",  # 7
        "2026-11-01 06:00:00.000000",  # 8: the largest id of the day, before noon
    ]
    with HandmadeDatabase(path) as db:
        db.add_proxy(A)
        for at in times:
            db.add_check(A, at, True, 10.0, None, None)
    spans = [
        ("2026-11-01", "2026-11-02"),
        ("2026-11-01", "2026-11-04"),
        ("2026-11-02", "2026-11-03"),
    ]
    with SourceSnapshot(path, busy_timeout_ms=1000, chunk_rows=chunk_rows) as snapshot:
        for low, high in spans:
            ids = [n for n, at in enumerate(times, 1) if low <= at < high]
            reads = snapshot.reads.reads
            assert id_range_between(snapshot, low, high) == (min(ids), max(ids)), (low, high)
            assert snapshot.reads.reads - reads >= 2  # a read on each connection at least
        assert id_range_between(snapshot, "2026-11-05", "2026-11-06") is None


def test_filter_values_are_parameters_not_sql(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    injection = "x') OR 1=1 --"
    folder = run(
        database,
        tmp_path / "exports",
        instance,
        format="jsonl",
        proxy_urls=[injection],
        error_types=[injection],
    )
    assert read_jsonl_gz(folder) == []


def test_an_empty_filter_list_is_a_config_error(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    result = materialize(
        [requested(validation_events)],
        partition_key=DAY,
        instance=instance,
        resources=export_resources(database, tmp_path / "exports"),
        run_config=request_config(validation_events, {"error_types": []}),
        raise_on_error=False,
    )
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert error is not None
    assert "an empty list matches nothing" in error.to_string()
    assert not (tmp_path / "exports").exists()


def test_a_day_without_results_gives_a_header_only_csv_and_an_empty_parquet(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    folder = run(database, tmp_path / "csv", instance, partition="2026-11-05")
    lines = gzip.decompress(next(folder.glob("*.csv.gz")).read_bytes()).decode().splitlines()
    assert [next(csv.reader(io.StringIO(line))) for line in lines] == [
        VALIDATION_EVENTS_SCHEMA.names
    ]
    facts = manifest(folder)
    assert facts.total_rows == 0
    assert facts.source["validation_results_min_id"] is None
    assert facts.source["validation_results_max_id"] is None

    folder = run(database, tmp_path / "parquet", instance, partition="2026-11-05", format="parquet")
    table = pq.read_table(next(folder.glob("*.parquet")))
    assert table.num_rows == 0
    assert table.schema.names == VALIDATION_EVENTS_SCHEMA.names


def test_the_read_is_a_rowid_range_without_a_sort(database: Path) -> None:
    with SourceSnapshot(database, busy_timeout_ms=1000, batch_rows=100) as snapshot:
        day = date.fromisoformat(DAY)
        ids = validation_id_range(snapshot, day)
        assert ids == (2, 7)
        sql, parameters = validation_events_query(day, ids)
        plan = " / ".join(
            row[3] for row in snapshot.execute(f"EXPLAIN QUERY PLAN {sql}", parameters)
        )
        range_plan = " / ".join(
            row[3]
            for row in snapshot.execute(
                "EXPLAIN QUERY PLAN SELECT min(id), max(id) FROM validation_results"
                " WHERE validated_at >= ? AND validated_at < ?",
                ["2026-11-01", "2026-11-02"],
            )
        )
    assert plan == "SEARCH validation_results USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"
    assert range_plan == (
        "SEARCH validation_results USING COVERING INDEX ix_validation_results_validated_at"
        " (validated_at>? AND validated_at<?)"
    )


def test_a_value_the_reader_cannot_convert_fails_the_run_naming_it_and_writes_nothing(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    with sqlite3.connect(database) as connection:
        connection.execute(
            "INSERT INTO validation_results (proxy_url, validated_at, is_valid, response_time_ms)"
            " VALUES (?, '2026-11-01 08:00:00.000000', 1, 'fast')",
            (A,),
        )
    connection.close()
    result = materialize(
        [validation_events],
        partition_key=DAY,
        instance=instance,
        resources=export_resources(database, tmp_path / "exports"),
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None
    error = user_error(failure)
    assert error.cls_name == "SourceError"
    assert "validation_results.response_time_ms holds a value that is not double" in (
        error_message(error)
    )
    assert not any(p.is_file() for p in (tmp_path / "exports").rglob("*"))


def test_read_ahead_hands_over_errors_and_stops_its_thread_when_closed() -> None:
    def batches(fail_after: int | None) -> Iterator[pa.RecordBatch]:
        for n in range(100):
            if n == fail_after:
                raise SourceError("the database went away")
            yield pa.record_batch([pa.array([n])], names=["n"])

    threads = threading.active_count()
    assert [b.column(0)[0].as_py() for b in read_ahead(batches(None))] == list(range(100))
    with pytest.raises(SourceError, match="the database went away"):
        list(read_ahead(batches(3)))
    early = read_ahead(batches(None), depth=1)
    assert next(early).column(0)[0].as_py() == 0
    early.close()  # the producer is blocked handing over the next batch
    assert threading.active_count() == threads


def _sample_rows(database: Path) -> list[dict[str, Any]]:
    """The whole validation history, read with plain sqlite3, as the export should show it."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        rows = connection.execute("SELECT * FROM validation_results ORDER BY id").fetchall()
    connection.close()
    return [
        {
            "id": row_id,
            "proxy_url": mask_url_credentials(url),
            "validated_at": datetime.fromisoformat(validated_at).replace(tzinfo=UTC),
            "is_valid": bool(is_valid),
            "response_time_ms": response_time_ms,
            "error_type": error_type,
            "error_message": None if message is None else mask_url_credentials(message),
        }
        for row_id, url, validated_at, is_valid, response_time_ms, error_type, message in rows
    ]


def test_the_union_of_every_day_is_the_validation_history_row_for_row(
    sample_deployment: SampleDeployment, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    first = sample_deployment.first_day
    days = [first + timedelta(days=n) for n in range((sample_deployment.last_day - first).days + 1)]
    exported: list[dict[str, Any]] = []
    for day in days:
        result = materialize(
            [configured(validation_events, {"format": "parquet"})],
            partition_key=day.isoformat(),
            instance=instance,
            resources=export_resources(sample_deployment.database, exports),
        )
        assert result.success
        folder = exports / "validation_events" / f"dt={day.isoformat()}"
        table = pq.read_table(next(folder.glob("*.parquet")))
        assert table.schema.names == VALIDATION_EVENTS_SCHEMA.names
        rows = table.to_pylist()
        assert all(row["validated_at"].date() == day for row in rows)
        assert [row["id"] for row in rows] == sorted(row["id"] for row in rows)
        assert manifest(folder).total_rows == len(rows)
        exported += rows

    history = _sample_rows(sample_deployment.database)
    assert len(history) == sample_deployment.validations
    assert [row["id"] for row in exported] == [row["id"] for row in history]
    assert exported == history
    assert any("***:***@" in (row["error_message"] or "") for row in exported)
