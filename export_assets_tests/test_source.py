"""The source: read-only, schema-checked, point-in-time reads of proxies.db."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from export_assets.source import POOL_SCHEMA, ProxyWhirlSource, SourceError
from export_assets.source.timestamps import parse_utc_text
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
    assert a["success_rate_7d"] == pytest.approx(3 / 6)
    b = day4[B]
    assert b["health_status"] == "healthy"
    assert b["total_checks"] == 2
    assert str(b["discovered_at"]) == "2026-11-02 08:00:00+00:00"


def test_seed_checks_without_history_are_not_counted(history: Path) -> None:
    seeded = {row["url"]: row for row in pool(history, date(2026, 11, 5))}[SEEDED]
    assert seeded["health_status"] == "unknown"
    assert seeded["total_checks"] == 0
    assert seeded["success_rate"] is None
    assert seeded["avg_response_time_ms"] is None


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
