"""The source: read-only, schema-checked, point-in-time reads of proxies.db."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.lib.source import POOL_SCHEMA, SourceError
from export_assets.lib.source.timestamps import parse_utc_text
from export_assets_tests.handmade import HandmadeDatabase

A = "http://198.51.100.1:8080"
B = "socks5://198.51.100.2:1080"
SEEDED = "https4://198.51.100.3:443"


def pool(database: Path, as_of: date) -> list[dict[str, object]]:
    source = ProxyWhirlSource(database=str(database), batch_rows=2)
    with source.open_snapshot() as snapshot:
        batches = list(snapshot.proxy_pool(as_of))
    assert all(batch.schema.equals(POOL_SCHEMA) for batch in batches)
    rows: list[dict[str, object]] = pa.Table.from_batches(batches, schema=POOL_SCHEMA).to_pylist()
    return rows


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """A: healthy -> unhealthy -> dead on the 3rd failure -> healthy; B: later discovered."""
    path = tmp_path / "proxies.db"
    with HandmadeDatabase(path) as db:
        db.add_proxy(A, discovered_at="2026-10-31 12:00:00.000000")
        db.add_proxy(B, discovered_at="2026-11-02T08:00:00+00:00")  # a liberal form
        db.add_proxy(SEEDED, discovered_at="2026-10-30 00:00:00")
        db.add_status(SEEDED)  # ProxyWhirl's seed check: in statuses, not in history
        db.add_check(A, "2026-11-01 00:00:00.000000", True, 100.0)
        db.add_check(A, "2026-11-01 23:59:59.999999", True, 200.0)
        db.add_check(A, "2026-11-02 10:00:00.000000", False, error_type="timeout")
        db.add_check(A, "2026-11-02 20:00:00.000000", False, error_type="timeout")
        db.add_check(A, "2026-11-03 00:00:00.000000", False, error_type="ssl_error")
        db.add_check(A, "2026-11-04 06:00:00.000000", True, 50.0)
        # A batch: one validated_at for several rows; id order decides.
        db.add_check(B, "2026-11-04 06:00:00.000000", False, error_type="timeout")
        db.add_check(B, "2026-11-04 06:00:00.000000", True, 80.0)
        db.add_check("http://deleted.example:1", "2026-11-01 01:00:00.000000", True, 1.0)
    return path


def test_health_is_rebuilt_with_proxywhirls_rules_day_by_day(history: Path) -> None:
    day1 = {row["url"]: row for row in pool(history, date(2026, 11, 2))}
    assert set(day1) == {A, SEEDED}  # B is discovered on 2026-11-02
    a = day1[A]
    assert a["health_status"] == "healthy"
    assert a["total_checks"] == 2
    assert a["total_successes"] == 2
    assert a["consecutive_successes"] == 2
    assert a["avg_response_time_ms"] == pytest.approx(0.2 * 200.0 + 0.8 * 100.0)
    assert str(a["last_check_at"]) == "2026-11-01 23:59:59.999999+00:00"

    a = {row["url"]: row for row in pool(history, date(2026, 11, 3))}[A]
    assert a["health_status"] == "unhealthy"
    assert a["consecutive_failures"] == 2
    assert a["consecutive_successes"] == 0

    a = {row["url"]: row for row in pool(history, date(2026, 11, 4))}[A]
    assert a["health_status"] == "dead"  # the third consecutive failure, at midnight
    assert a["consecutive_failures"] == 3
    assert a["success_rate"] == pytest.approx(2 / 5)

    day4 = {row["url"]: row for row in pool(history, date(2026, 11, 5))}
    a = day4[A]
    assert a["health_status"] == "healthy"
    assert (a["consecutive_successes"], a["consecutive_failures"]) == (1, 0)
    assert a["avg_response_time_ms"] == pytest.approx(0.2 * 50.0 + 0.8 * (0.2 * 200 + 0.8 * 100))
    assert str(a["last_failure_at"]) == "2026-11-03 00:00:00+00:00"
    assert a["observed_success_rate_7d"] == pytest.approx(3 / 6)
    assert a["success_rate_7d"] is None  # ProxyWhirl's column: 0.3.3 never writes it
    b = day4[B]
    assert b["health_status"] == "healthy"
    assert b["total_checks"] == 2
    assert str(b["discovered_at"]) == "2026-11-02 08:00:00+00:00"


def test_a_seed_check_counts_as_proxywhirl_counts_it(history: Path) -> None:
    # add_proxies_batch(validated=True): a status with one check, no history row. ProxyWhirl
    # counts it; the time is the status's, or discovered_at where the status has none.
    seeded = {row["url"]: row for row in pool(history, date(2026, 11, 5))}[SEEDED]
    assert seeded["health_status"] == "healthy"
    assert (seeded["total_checks"], seeded["total_successes"]) == (1, 1)
    assert seeded["consecutive_successes"] == 1
    assert seeded["success_rate"] == 1.0
    assert seeded["avg_response_time_ms"] == 150.0
    assert str(seeded["last_check_at"]) == "2026-10-30 00:00:00+00:00"
    assert seeded["last_success_at"] == seeded["last_check_at"]
    assert seeded["checks_7d"] == 1  # seeded within the 7 days (from 2026-10-29)


def test_a_seed_time_is_read_from_the_status_while_it_holds_it(tmp_path: Path) -> None:
    # ProxyWhirl stamps a seed when its batch starts, just before discovered_at: the status
    # keeps that time in last_success_at until a later success replaces it.
    path = tmp_path / "proxies.db"
    with HandmadeDatabase(path) as db:
        db.add_proxy(A, discovered_at="2026-11-01 12:00:00.000250")
        db.add_status(
            A,
            health_status="unhealthy",
            total_checks=2,
            total_successes=1,
            consecutive_successes=0,
            consecutive_failures=1,
            avg_response_time_ms=75.5,
            last_check_at="2026-11-02 10:00:00.000000",
            last_success_at="2026-11-01 12:00:00.000001",
            last_failure_at="2026-11-02 10:00:00.000000",
        )
        db.add_check(A, "2026-11-02 10:00:00.000000", False, error_type="timeout")
    first, last = pool(path, date(2026, 11, 2))[0], pool(path, date(2026, 11, 3))[0]
    assert str(first["last_check_at"]) == "2026-11-01 12:00:00.000001+00:00"
    assert first["health_status"] == "healthy"
    assert str(last["last_success_at"]) == "2026-11-01 12:00:00.000001+00:00"
    assert (last["health_status"], last["total_checks"]) == ("unhealthy", 2)
    assert last["avg_response_time_ms"] == 75.5


def test_checks_recorded_before_the_add_are_history_only(tmp_path: Path) -> None:
    # ProxyWhirl's record_validation updates a status only if its row exists: from the add.
    path = tmp_path / "proxies.db"
    with HandmadeDatabase(path) as db:
        db.add_proxy(A, discovered_at="2026-11-01T12:00:00.000000")  # 'T': compared as a time
        db.add_check(A, "2026-11-01 08:00:00.000000", False, error_type="timeout")
        db.add_check(A, "2026-11-01 11:59:59.999999", False, error_type="timeout")
        db.add_check(A, "2026-11-01 12:00:00.000000", True, 90.0)  # at the add: counted
        db.add_check(A, "2026-11-01 13:00:00.000000", False, error_type="timeout")
    a = pool(path, date(2026, 11, 2))[0]
    assert (a["total_checks"], a["total_successes"], a["consecutive_failures"]) == (2, 1, 1)
    assert a["health_status"] == "unhealthy"  # not dead: the earlier failures never counted
    assert a["avg_response_time_ms"] == 90.0
    assert a["checks_7d"] == 2


def test_a_seed_latency_is_recovered_through_the_checks_that_followed(tmp_path: Path) -> None:
    # ProxyWhirl keeps only the average; the seed's own latency is solved for, so the day of
    # the seed shows it and the last day equals the status.
    path = tmp_path / "proxies.db"
    latest = 0.2 * 300.0 + 0.8 * (0.2 * 100.0 + 0.8 * 123.456)
    with HandmadeDatabase(path) as db:
        db.add_proxy(A, discovered_at="2026-11-01 12:00:00.000001")
        db.add_status(
            A,
            total_checks=3,
            total_successes=3,
            consecutive_successes=3,
            avg_response_time_ms=latest,
            last_check_at="2026-11-03 10:00:00.000000",
            last_success_at="2026-11-03 10:00:00.000000",
        )
        db.add_check(A, "2026-11-02 10:00:00.000000", True, 100.0)
        db.add_check(A, "2026-11-03 10:00:00.000000", True, 300.0)
    first, last = pool(path, date(2026, 11, 2))[0], pool(path, date(2026, 11, 4))[0]
    assert first["avg_response_time_ms"] == 123.456
    assert str(first["last_check_at"]) == "2026-11-01 12:00:00.000001+00:00"  # discovered_at
    assert first["total_checks"] == 1
    assert last["avg_response_time_ms"] == latest
    assert last["total_checks"] == 3


def test_a_day_before_any_data_gives_an_empty_pool(history: Path) -> None:
    assert pool(history, date(2026, 1, 1)) == []


def test_missing_database_names_the_path_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "proxies.db"
    with pytest.raises(SourceError, match=r"nowhere/proxies\.db does not exist: set PROXYWHIRL_DB"):
        ProxyWhirlSource(database=str(missing)).open_snapshot()
    assert not missing.exists()
    assert not missing.parent.exists()


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "proxies.db"
    bogus.write_bytes(b"this is a CSV file,not a database\n" * 100)
    before = bogus.read_bytes()
    with pytest.raises(SourceError, match=r"is not a readable SQLite database .*PROXYWHIRL_DB"):
        ProxyWhirlSource(database=str(bogus)).open_snapshot()
    assert bogus.read_bytes() == before


def test_a_foreign_sqlite_database_names_the_missing_table(tmp_path: Path) -> None:
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    connection.close()
    with pytest.raises(
        SourceError, match=r"other\.db has no table proxy_identities: is PROXYWHIRL_DB a ProxyWhirl"
    ):
        ProxyWhirlSource(database=str(foreign)).open_snapshot()


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "proxies.db"
    HandmadeDatabase(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("ALTER TABLE validation_results DROP COLUMN error_type")
    connection.close()
    with pytest.raises(SourceError, match=r"table validation_results has no column error_type"):
        ProxyWhirlSource(database=str(path)).open_snapshot()


@pytest.mark.parametrize(
    ("table", "value"),
    [
        ("proxy_identities", "last tuesday"),
        ("validation_results", ""),
        ("validation_results", 1793502245),
        ("both", "2026-10-45"),
    ],
)
def test_a_datetime_that_is_not_a_timestamp_is_named(
    tmp_path: Path, table: str, value: str | int
) -> None:
    path = tmp_path / "proxies.db"
    with HandmadeDatabase(path) as db:
        db.add_proxy(A, discovered_at=str(value) if table != "validation_results" else "2026-10-01")
        db.add_check(A, value if table != "proxy_identities" else "2026-10-01", True, 1.0)  # type: ignore[arg-type]
    column = (
        "validation_results.validated_at"
        if table == "validation_results"
        else ("proxy_identities.discovered_at")
    )
    with pytest.raises(SourceError, match=rf"{column} holds '{value}', which is not a timestamp"):
        pool(path, date(2026, 11, 2))


def test_reading_never_writes(history: Path) -> None:
    digest = hashlib.sha256(history.read_bytes()).hexdigest()
    mtime = history.stat().st_mtime_ns
    pool(history, date(2026, 11, 5))
    assert hashlib.sha256(history.read_bytes()).hexdigest() == digest
    assert history.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in history.parent.iterdir()) == ["proxies.db"]


def test_a_writer_holding_its_lock_does_not_block_reading(history: Path) -> None:
    writer = sqlite3.connect(history, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # RESERVED lock, an uncommitted check pending
    writer.execute(
        "INSERT INTO validation_results (proxy_url, validated_at, is_valid) "
        "VALUES (?, '2026-11-04 07:00:00.000000', 0)",
        (A,),
    )
    try:
        a = {row["url"]: row for row in pool(history, date(2026, 11, 5))}[A]
        assert a["total_checks"] == 6  # the uncommitted row is not seen
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_commit_in_progress_is_waited_for(history: Path) -> None:
    writer = sqlite3.connect(history, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN EXCLUSIVE")  # readers are locked out until the commit
    writer.execute(
        "INSERT INTO validation_results (proxy_url, validated_at, is_valid) "
        "VALUES (?, '2026-11-04 07:00:00.000000', 0)",
        (A,),
    )
    committer = threading.Timer(0.5, writer.execute, args=("COMMIT",))
    committer.start()
    try:
        a = {row["url"]: row for row in pool(history, date(2026, 11, 5))}[A]
        assert a["total_checks"] == 7  # read after the commit, under the busy timeout
    finally:
        committer.join()
        writer.close()


def test_a_lock_held_past_the_busy_timeout_fails_clearly(history: Path) -> None:
    writer = sqlite3.connect(history, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        source = ProxyWhirlSource(database=str(history), busy_timeout_ms=200)
        with pytest.raises(SourceError, match=r"stayed locked by a writer past the busy timeout"):
            source.open_snapshot()
    finally:
        writer.execute("ROLLBACK")
        writer.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01 03:04:05.678901", "2026-11-01 03:04:05.678901+00:00"),
        ("2026-11-01 03:04:05", "2026-11-01 03:04:05+00:00"),
        ("2026-11-01T03:04:05.5", "2026-11-01 03:04:05.500000+00:00"),
        ("2026-11-01 03:04:05+00:00", "2026-11-01 03:04:05+00:00"),
        ("2026-11-01T03:04:05Z", "2026-11-01 03:04:05+00:00"),
        ("2026-11-01 05:04:05+02:00", "2026-11-01 03:04:05+00:00"),
    ],
)
def test_datetime_text_is_read_liberally_as_utc(text: str, expected: str) -> None:
    parsed = parse_utc_text(pa.array([text, None]), "t").to_pylist()
    assert str(parsed[0]) == expected
    assert parsed[1] is None
