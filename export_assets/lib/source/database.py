"""Read-only access to ProxyWhirl's ``proxies.db``: schema check, snapshots, Arrow batches."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc

from export_assets.lib.source.arrays import arrow_array
from export_assets.lib.source.schema import REQUIRED_COLUMNS
from export_assets.lib.source.status import StatusCounts, counted_checks, replay, seed_check
from export_assets.lib.source.timestamps import (
    TIMESTAMP_UTC,
    TimestampError,
    day_text,
    parse_utc_text,
)


class SourceError(Exception):
    """A ProxyWhirl file is missing, unreadable, or not what the exporter expects."""


POOL_SCHEMA = pa.schema(
    [
        pa.field("url", pa.string(), nullable=False),
        pa.field("protocol", pa.string(), nullable=False),
        pa.field("host", pa.string(), nullable=False),
        pa.field("port", pa.int32(), nullable=False),
        pa.field("country_code", pa.string()),
        pa.field("country_name", pa.string()),
        pa.field("region", pa.string()),
        pa.field("city", pa.string()),
        pa.field("latitude", pa.float64()),
        pa.field("longitude", pa.float64()),
        pa.field("asn", pa.int64()),
        pa.field("isp_name", pa.string()),
        pa.field("is_residential", pa.bool_(), nullable=False),
        pa.field("is_datacenter", pa.bool_(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_url", pa.string()),
        pa.field("discovered_at", TIMESTAMP_UTC, nullable=False),
        pa.field("health_status", pa.string(), nullable=False),
        pa.field("last_check_at", TIMESTAMP_UTC),
        pa.field("last_success_at", TIMESTAMP_UTC),
        pa.field("last_failure_at", TIMESTAMP_UTC),
        pa.field("consecutive_successes", pa.int64(), nullable=False),
        pa.field("consecutive_failures", pa.int64(), nullable=False),
        pa.field("total_checks", pa.int64(), nullable=False),
        pa.field("total_successes", pa.int64(), nullable=False),
        pa.field("success_rate", pa.float64()),
        pa.field("checks_7d", pa.int64(), nullable=False),
        # The exporter's own 7-day rate; ProxyWhirl's success_rate_7d column beside it is as
        # ProxyWhirl 0.3.3 keeps it: never written, NULL.
        pa.field("observed_success_rate_7d", pa.float64()),
        pa.field("success_rate_7d", pa.float64()),
        pa.field("avg_response_time_ms", pa.float64()),
    ]
)
"""The pool as of a moment: identity fields (never credentials) and rebuilt health."""

# Every identity column the exporter reads but the credentials, which are read apart.
_IDENTITY_COLUMNS = tuple(
    name for name in REQUIRED_COLUMNS["proxy_identities"] if name not in {"username", "password"}
)


def _identity_type(name: str) -> pa.DataType:
    # discovered_at stays ProxyWhirl's text (pools compare it as text, as SQLite does) and
    # booleans their 0/1: the pool converts both as it converts rows read from SQLite.
    kept = POOL_SCHEMA.field(name).type
    return pa.string() if name == "discovered_at" else pa.int64() if kept == pa.bool_() else kept


_IDENTITY_SCHEMA = pa.schema([pa.field(name, _identity_type(name)) for name in _IDENTITY_COLUMNS])

DEFAULT_BATCH_ROWS = 8_192
"""Rows per Arrow batch handed on: an export holds a few batches at once (one being read
ahead, one being formatted), so this bounds its memory. The 1M-row day's csv.gz export
peaks at 199 MiB with 8,192, 206 MiB with 16,384 and some 230 MiB with 65,536 rows, at the
same speed; reads adapt their own length (``ChunkSizer``) and Parquet sizes its row groups
on its own (``PARQUET_ROW_GROUP_ROWS``)."""
DEFAULT_CHUNK_ROWS = 20_000
DEFAULT_BUSY_TIMEOUT_MS = 30_000  # how long a read waits for a ProxyWhirl writer's lock
"""Rows a read of ``validation_results`` starts with (see ``SourceSnapshot``, ``ChunkSizer``)."""
TARGET_READ_SECONDS = 0.02
"""How long one read of ``validation_results`` should hold SQLite's lock; chunks adapt."""

_DAY_FILTERED = (("proxy_identities", "discovered_at"), ("validation_results", "validated_at"))

# The whole of a proxy's history before a moment, in id order within each proxy: the
# proxy_url index holds (proxy_url, rowid), so this is an index walk without a sort, and
# the keyset (the last url and id read) lets each read start where the previous stopped.
# ``+id`` keeps the watermark from being used as a rowid range instead of the index.
_HISTORY_COLUMNS = "proxy_url, id, validated_at, is_valid, response_time_ms"
_HISTORY_REST_OF_URL = (
    f"SELECT {_HISTORY_COLUMNS} FROM validation_results WHERE proxy_url = ? AND id > ?"
    " AND +id <= ?{before} ORDER BY id LIMIT ?"
)
_HISTORY_NEXT_URLS = (
    f"SELECT {_HISTORY_COLUMNS} FROM validation_results WHERE proxy_url > ?"
    " AND +id <= ?{before} ORDER BY proxy_url, id LIMIT ?"
)
_HISTORY_FIRST = (
    f"SELECT {_HISTORY_COLUMNS} FROM validation_results WHERE +id <= ?{{before}}"
    " ORDER BY proxy_url, id LIMIT ?"
)

# Distinct proxy_url values of the history from one url on, an index seek each (a skip
# scan): the proxies of the history without reading their rows.
_DISTINCT_URLS = (
    "WITH RECURSIVE urls(url, n) AS ("
    " SELECT (SELECT min(proxy_url) FROM validation_results WHERE proxy_url > ?), 1"
    " UNION ALL SELECT (SELECT min(proxy_url) FROM validation_results WHERE proxy_url > url),"
    " n + 1 FROM urls WHERE url IS NOT NULL AND n < ?)"
    " SELECT url FROM urls WHERE url IS NOT NULL"
)
_FIRST_URL = "SELECT min(proxy_url) FROM validation_results"

# How many rows of one url's history there are up to the watermark: read off the proxy_url
# index alone (it holds the rowid), without a row of the table.
_URL_ROWS = "SELECT count(*) FROM validation_results WHERE proxy_url = ? AND id <= ?"

# A read of page 1 that begins a read transaction: the lock is taken (or waited for) here.
TAKE_READ_LOCK = "SELECT 1 FROM sqlite_master LIMIT 1"
POLL_SECONDS = 0.0005


def take_read_lock(probe: Callable[[], object], timeout_ms: int) -> None:
    """Run ``probe`` (the first read of a transaction) until it gets the read lock.

    The connections' own busy timeout is 0 and the wait is here, polling every half
    millisecond: SQLite's busy handler sleeps 1, 2, 5 ... up to 100 ms between tries, and a
    busy writer that commits every few milliseconds leaves gaps that short, so a read would
    wait far longer than the writer's commit. Polling cannot starve the writer: once it
    asks to commit (PENDING), no new read lock is granted until it has.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        try:
            probe()
            return
        except Exception as exc:  # sqlite3's and the ADBC driver's errors alike
            busy = "locked" in str(exc) or "busy" in str(exc)
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(POLL_SECONDS)


Check = tuple[Any, Any, Any]
"""One validation as the health rules take it: (validated_at, is_valid, response_time_ms)."""


def connect_read_only(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """Open ``path`` read-only (``mode=ro``) with a busy timeout; never creates a file."""
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise SourceError(
            f"ProxyWhirl database {path} {what}: set PROXYWHIRL_DB to ProxyWhirl's proxies.db "
            "(or write a sample with `export-assets sample-data --out DIR`)"
        )
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        connection = sqlite3.connect(
            uri,
            uri=True,
            timeout=busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise SourceError(f"cannot open ProxyWhirl database {path} read-only: {exc}") from exc
    return connection


def database_version(path: Path, busy_timeout_ms: int) -> tuple[int, int]:
    """(highest ``validation_results`` id, 0 when empty; proxy count) of ProxyWhirl's
    database: two one-row read-only statements, no lock held beyond them (what a sensor
    tick and an observation of the source look at)."""
    connection = connect_read_only(path, busy_timeout_ms)
    try:
        (watermark,) = connection.execute("SELECT max(id) FROM validation_results").fetchone()
        (proxies,) = connection.execute("SELECT count(*) FROM proxy_identities").fetchone()
    except sqlite3.Error as exc:
        raise SourceError(
            f"cannot read validation_results of {path} ({exc}): is PROXYWHIRL_DB a "
            "ProxyWhirl database?"
        ) from exc
    finally:
        connection.close()
    return int(watermark or 0), int(proxies)


class Rows(list[tuple[Any, ...]]):
    """A statement's rows, all fetched: the statement is finished and holds no lock."""

    def fetchone(self) -> tuple[Any, ...] | None:
        """The first row, or None."""
        return self[0] if self else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        """Every row."""
        return list(self)


class ChunkSizer:
    """How many rows the next read asks for, so that each read holds the lock about
    ``TARGET_READ_SECONDS``: starts at ``rows``, grows while reads are quick (up to
    ``grow`` times ``rows``: what one read fetches is held in memory), shrinks when one
    was slow. Fewer, fuller reads matter under a busy writer: each read waits for a gap
    between its commits."""

    def __init__(self, rows: int, *, grow: int = 1, least: int = 1024, start: int = 0) -> None:
        self.least = min(least, rows)
        self.most = rows * grow
        self.rows = max(self.least, min(start, rows)) if start else rows

    def took(self, seconds: float, rows: int) -> None:
        """Adapt to a read of ``rows`` rows (or scanned ids) that took ``seconds``."""
        if seconds > TARGET_READ_SECONDS and rows:
            self.rows = max(self.least, int(rows * TARGET_READ_SECONDS / seconds))
        elif seconds < TARGET_READ_SECONDS / 2:  # gently: a read's time varies
            self.rows = min(self.most, self.rows * 3 // 2)


@dataclass
class ReadStats:
    """How the snapshot's reads went: their number, the longest and total time one held
    the read lock, and the total time spent waiting for writers' locks."""

    reads: int = 0
    held_max: float = 0.0
    held_total: float = 0.0
    waited_total: float = 0.0

    def record(self, waited: float, held: float) -> None:
        """One more read, that waited ``waited`` seconds and held the lock ``held``."""
        self.reads += 1
        self.held_max = max(self.held_max, held)
        self.held_total += held
        self.waited_total += waited

    def add(self, other: ReadStats) -> None:
        """Count ``other``'s reads (a twin connection's) as this snapshot's."""
        self.reads += other.reads
        self.held_max = max(self.held_max, other.held_max)
        self.held_total += other.held_total
        self.waited_total += other.waited_total


def _connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """A snapshot's read-only connection: its busy timeout is 0, ``take_read_lock`` waits."""
    connection = connect_read_only(path, busy_timeout_ms)
    connection.execute("PRAGMA busy_timeout = 0")
    return connection


class SourceSnapshot:
    """A consistent view of ``proxies.db`` that holds no lock between reads.

    ProxyWhirl keeps writing while we read, by default in SQLite's rollback-journal mode,
    where an open read transaction keeps every writer from committing. So the snapshot is
    not a transaction: it is ``watermark``, the highest ``validation_results`` id when it
    was opened. ``validation_results`` is append-only with growing ids, so the rows with
    ``id <= watermark`` never change, and every read of it is bounded by the watermark and
    done in short statements (chunks of ids, or of (url, id) keys), each fully fetched
    before the next, so SQLite's lock is held milliseconds at a time (``ChunkSizer``) and
    a writer waits at most that long. The schema and timestamp checks, the watermark and
    the small ``proxy_identities`` table are read in one short transaction when it opens.
    """

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        identities: bool = True,
    ) -> None:
        self.path = path
        self.batch_rows = batch_rows
        self.chunk_rows = chunk_rows
        self.busy_timeout_ms = busy_timeout_ms
        self._connection = _connect(path, busy_timeout_ms)
        self._identities: pa.Table | None = None
        self._statuses: dict[str, StatusCounts] = {}
        self._latest_check: tuple[Any] | None = None
        self.last_held = 0.0
        self.reads = ReadStats()
        try:
            self._execute_in_transaction("BEGIN")
            try:
                self._take_read_lock()
                self._verify_schema()
                self._verify_timestamps()
                row = self._statement("SELECT max(id) FROM validation_results").fetchone()
                self.watermark: int | None = None if row is None or row[0] is None else int(row[0])
                if identities:
                    self._identities = self._read_identities()
                    # In the same transaction as the watermark: ProxyWhirl updates a status
                    # in the commit that inserts the check, so the two agree.
                    self._statuses = self._read_statuses()
            finally:
                self._execute_in_transaction("COMMIT")
        except BaseException:
            self._connection.close()
            raise

    def twin(self) -> SourceSnapshot:
        """A second connection to the same database under the same watermark, for short
        reads on another thread (its own lock timings, in its own ``reads``); close it."""
        twin = object.__new__(SourceSnapshot)
        twin.path = self.path
        twin.batch_rows = self.batch_rows
        twin.chunk_rows = self.chunk_rows
        twin.busy_timeout_ms = self.busy_timeout_ms
        twin._connection = _connect(self.path, self.busy_timeout_ms)
        twin._identities = None
        twin._statuses = {}
        twin._latest_check = None
        twin.last_held = 0.0
        twin.reads = ReadStats()
        twin.watermark = self.watermark
        return twin

    @property
    def id_limit(self) -> int:
        """The highest id any read may return (below every id when the history was empty)."""
        return -(2**63) if self.watermark is None else self.watermark

    def __enter__(self) -> SourceSnapshot:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent): no transaction is open between reads."""
        self._connection.close()

    def _execute_in_transaction(self, sql: str) -> None:
        try:
            self._connection.execute(sql)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Rows:
        """Run one read statement in a read transaction of its own and fetch all its rows,
        so it holds no lock once this returns; SQLite errors become SourceErrors that say
        why. For small results: big reads go through the chunked readers.

        ``last_held`` is then how long the statement held the database's read lock, the
        wait for a writer's lock excluded: chunk sizes adapt to it.
        """
        with self.short_read():
            return self._statement(sql, parameters)

    @contextmanager
    def short_read(self) -> Iterator[None]:
        """One read transaction around the reads made inside (``execute_inside``): they
        see the same data, take the lock once, and ``last_held`` is how long they held it.
        Keep it to milliseconds: a writer cannot commit meanwhile (rollback journal)."""
        self._execute_in_transaction("BEGIN")
        try:
            # The first read takes the lock (waiting for a writer's commit if need be).
            asked = time.perf_counter()
            self._take_read_lock()
            started = time.perf_counter()
            yield
            self.last_held = time.perf_counter() - started
            self.reads.record(started - asked, self.last_held)
        finally:
            if self._connection.in_transaction:
                self._execute_in_transaction("COMMIT")

    def execute_inside(self, sql: str, parameters: Sequence[Any] = ()) -> Rows:
        """One statement inside :meth:`short_read`, fully fetched."""
        return self._statement(sql, parameters)

    def _take_read_lock(self) -> None:
        try:
            take_read_lock(
                lambda: self._connection.execute(TAKE_READ_LOCK).fetchall(), self.busy_timeout_ms
            )
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _statement(self, sql: str, parameters: Sequence[Any] = ()) -> Rows:
        try:
            cursor = self._connection.execute(sql, parameters)
            try:
                return Rows(cursor.fetchall())
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error) -> SourceError:
        if isinstance(exc, sqlite3.OperationalError):
            if "locked" in str(exc) or "busy" in str(exc):
                return SourceError(
                    f"ProxyWhirl database {self.path} stayed locked by a writer past the busy "
                    f"timeout ({exc}); retry, or raise busy_timeout_ms"
                )
            return SourceError(f"reading ProxyWhirl database {self.path} failed: {exc}")
        if isinstance(exc, sqlite3.DatabaseError):
            return SourceError(
                f"{self.path} is not a readable SQLite database ({exc}): PROXYWHIRL_DB must "
                "point at ProxyWhirl's proxies.db"
            )
        return SourceError(f"reading ProxyWhirl database {self.path} failed: {exc}")

    def _verify_schema(self) -> None:
        for table, needed in REQUIRED_COLUMNS.items():
            present = {row[1] for row in self._statement(f"PRAGMA table_info({table})")}
            if not present:
                raise SourceError(
                    f"{self.path} has no table {table}: is PROXYWHIRL_DB a ProxyWhirl database?"
                )
            missing = [column for column in needed if column not in present]
            if missing:
                raise SourceError(
                    f"{self.path}: table {table} has no column {', '.join(missing)}; the exporter "
                    f"reads ProxyWhirl 0.3's schema ({', '.join(needed)}): is this database "
                    "from another ProxyWhirl version?"
                )

    def _verify_timestamps(self) -> None:
        # Day filters compare DATETIME text; a value that does not start with a digit (or is
        # not text at all: numbers sort first) would fall outside every day unseen. '0-' and
        # ':' stay text under the column's NUMERIC affinity; the range uses the index.
        for table, column in _DAY_FILTERED:
            row = self._statement(
                f"SELECT {column} FROM {table} WHERE {column} < '0-' OR {column} >= ':' LIMIT 1"
            ).fetchone()
            if row is not None:
                raise SourceError(
                    f"{self.path}: {table}.{column} holds {str(row[0])[:60]!r}, which is not a "
                    "timestamp; ProxyWhirl writes 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC)"
                )

    def _read_identities(self) -> pa.Table:
        rows = self._statement(
            f"SELECT {', '.join(_IDENTITY_COLUMNS)} FROM proxy_identities ORDER BY url"
        )
        # discovered_at stays ProxyWhirl's text: it is compared as text, as SQLite does.
        batch = rows_to_batch(rows, _IDENTITY_SCHEMA, table="proxy_identities")
        return pa.Table.from_batches([batch], schema=_IDENTITY_SCHEMA)

    def _read_statuses(self) -> dict[str, StatusCounts]:
        rows = self._statement(
            "SELECT proxy_url, total_checks, total_successes, last_check_at, last_success_at,"
            " avg_response_time_ms FROM proxy_statuses WHERE total_successes > 0"
        )  # a seed check is a success: other statuses never hold one
        statuses = {}
        for url, checks, successes, last_check_at, last_success_at, average in rows:
            if isinstance(checks, int) and isinstance(successes, int):
                statuses[url] = StatusCounts(
                    checks,
                    successes,
                    last_check_at if isinstance(last_check_at, str) else None,
                    last_success_at if isinstance(last_success_at, str) else None,
                    float(average) if isinstance(average, int | float) else None,
                )
        return statuses

    @property
    def identities(self) -> pa.Table:
        """``proxy_identities`` as read when the snapshot opened, in ``url`` order."""
        if self._identities is None:
            raise RuntimeError("this snapshot was opened without proxy_identities")
        return self._identities

    def identity_rows(self, before: str) -> Iterator[list[tuple[Any, ...]]]:
        """Identities discovered before ``before`` (DATETIME text), in url order, by batch,
        as tuples of the pool's identity columns (discovered_at as a timestamp)."""
        table = self.identities
        # An Arrow scalar, not the text: a Python value here would make pyarrow import pandas.
        bound = arrow_array([before], pa.string())[0]
        kept = table.filter(pc.less(table.column("discovered_at"), bound))
        for start in range(0, kept.num_rows, self.batch_rows):
            piece = kept.slice(start, self.batch_rows)
            columns = [piece.column(name).to_pylist() for name in _IDENTITY_COLUMNS]
            yield list(zip(*columns, strict=True))

    def validation_watermark(self, before: date) -> int | None:
        """Highest validation id (up to the watermark) recorded before midnight (UTC)
        opening ``before``.

        Read downwards from the watermark by id chunks: the first chunk holding such a row
        holds the highest, whatever the order of ids and times.
        """
        if self.watermark is None:
            return None
        lowest = self.execute("SELECT min(id) FROM validation_results").fetchone()
        bottom = int(lowest[0]) if lowest and lowest[0] is not None else self.watermark
        sizer = ChunkSizer(self.chunk_rows, grow=8)  # one number per read
        high = self.watermark
        while high >= bottom:
            low = max(bottom, high - sizer.rows + 1)
            row = self.execute(
                "SELECT max(id) FROM validation_results"
                " WHERE id >= ? AND id <= ? AND validated_at < ?",
                (low, high, day_text(before)),
            ).fetchone()
            sizer.took(self.last_held, high - low + 1)
            if row is not None and row[0] is not None:
                return int(row[0])
            high = low - 1
        return None

    def histories(
        self, before: str | None = None, *, url: str | None = None, counted: bool = True
    ) -> Generator[tuple[Any, list[Check]], None, None]:
        """Each proxy's checks as ProxyWhirl counted them in its status, up to the watermark
        (and before ``before``, DATETIME text), in ``url`` order; ``url``: that one only.

        ``counted`` (the default): one entry per proxy of ``proxy_identities`` (discovered
        before ``before``), checks or none: its seed check if it was added as validated,
        then its checks recorded at or after its ``discovered_at``, in id order (the order
        ProxyWhirl applied them), as ``status.replay`` takes them. Not ``counted``: every
        url of the history, identity or not, with all its rows in ``(validated_at, id)``
        order (what is left of a deleted proxy).
        """
        if not counted:
            yield from self._raw_histories(before, url=url)
            return
        table = self.identities
        if before is not None:
            bound = arrow_array([before], pa.string())[0]  # not the text: see identity_rows
            table = table.filter(pc.less(table.column("discovered_at"), bound))
        if url is not None:
            table = table.filter(pc.equal(table.column("url"), arrow_array([url], pa.string())[0]))
        raw = self._raw_histories(before, url=url, ordered=False)
        current = next(raw, None)
        try:
            for known, discovered_at in zip(
                table.column("url").to_pylist(),
                table.column("discovered_at").to_pylist(),
                strict=True,
            ):
                while current is not None and current[0] < known:  # a deleted proxy's
                    current = next(raw, None)
                checks: list[Check] = []
                rows_before = 0
                if current is not None and current[0] == known:
                    rows_before = len(current[1])
                    checks = counted_checks(current[1], discovered_at)
                    current = next(raw, None)
                seed = self._seed(known, discovered_at, checks, before, rows_before)
                yield known, checks if seed is None else [seed, *checks]
        finally:
            raw.close()

    def _seed(
        self,
        url: str,
        discovered_at: str,
        checks: list[Check],
        before: str | None,
        rows_before: int,
    ) -> Check | None:
        """The seed check of ``url`` (see ``status.seed_check``), from its counted checks
        before ``before`` (``rows_before`` rows of its history were read) and the rest of
        its history, read only when its status counts exactly one check more than all."""
        status = self._statuses.get(url)
        if status is None:
            return None
        # Every row from ``before`` on was counted: the proxy was discovered before it.
        later = 0 if before is None else self._rows_from(url, before, rows_before)
        if status.total_checks != len(checks) + later + 1:
            return None  # not seeded
        every = self._counted_checks(url, discovered_at) if later else checks
        successes = sum(1 for check in every if check[1])
        latencies = [check[2] for check in every if check[1] and check[2] is not None]
        return seed_check(status, discovered_at, len(every), successes, latencies)

    def _rows_from(self, url: str, before: str, rows_before: int) -> int:
        """How many rows of ``url``'s history (up to the watermark) are from ``before`` on,
        ``rows_before`` being those before it: one index-only count, none at all when no
        row of the table is that recent."""
        if self._latest_check is None:
            row = self.execute("SELECT max(validated_at) FROM validation_results").fetchone()
            self._latest_check = (None if row is None else row[0],)
        latest = self._latest_check[0]
        if not isinstance(latest, str) or latest < before:
            return 0
        row = self.execute(_URL_ROWS, (url, self.id_limit)).fetchone()
        return (0 if row is None else int(row[0])) - rows_before

    def _counted_checks(self, url: str, discovered_at: str) -> list[Check]:
        """Every check of ``url`` up to the watermark that ProxyWhirl counted, in id order."""
        for _, checks in self._raw_histories(url=url, ordered=False):
            return counted_checks(checks, discovered_at)
        return []

    def _raw_histories(
        self, before: str | None = None, *, url: str | None = None, ordered: bool = True
    ) -> Generator[tuple[Any, list[Check]], None, None]:
        """Each url's rows of the history up to the watermark (and before ``before``), by
        ``proxy_url``; in ``(validated_at, id)`` order, or id order if not ``ordered``.

        Read by (url, id) keys in short statements; a proxy's checks are held until its
        last one is read (one proxy's history at a time).
        """
        arrange = _in_time_order if ordered else _in_id_order
        condition = "" if before is None else " AND validated_at < ?"
        tail: tuple[Any, ...] = () if before is None else (before,)
        # Starts small: rows in url order are read by random access, 10-50 times slower
        # than in id order, so a first read of chunk_rows could hold the lock too long.
        sizer = ChunkSizer(self.chunk_rows, grow=4, start=1024)
        # What the next read is: the first rows, the rest of ``current``'s rows after
        # ``last_id``, or the urls after ``current``.
        step = "rest" if url is not None else "first"
        current: Any = url
        last_id = -(2**63)  # below every id but the lowest int64, which no one writes
        checks: list[tuple[Any, ...]] = []
        while step:
            limit = sizer.rows
            if step == "first":
                sql = _HISTORY_FIRST.format(before=condition)
                rows = self.execute(sql, (self.id_limit, *tail, limit))
            elif step == "rest":
                sql = _HISTORY_REST_OF_URL.format(before=condition)
                rows = self.execute(sql, (current, last_id, self.id_limit, *tail, limit))
            else:
                sql = _HISTORY_NEXT_URLS.format(before=condition)
                rows = self.execute(sql, (current, self.id_limit, *tail, limit))
            sizer.took(self.last_held, len(rows))
            for row in rows:
                if row[0] != current:
                    if checks:
                        yield current, arrange(checks)
                    current, checks = row[0], []
                checks.append(row)
            if rows:
                last_id = rows[-1][1]
            if len(rows) == limit:  # stopped at the limit: the last url may have more
                step = "rest"
            elif step == "rest" and url is None:  # that url is done: the next ones
                step = "next"
            else:
                step = ""
        if checks:
            yield current, arrange(checks)

    def history_urls(self) -> Iterator[Any]:
        """Every distinct ``proxy_url`` of ``validation_results``, in order (rows above the
        watermark included: read a url's history to know whether it has rows below)."""
        row = self.execute(_FIRST_URL).fetchone()
        if row is None or row[0] is None:
            return
        last = row[0]
        yield last
        while True:
            urls = self.execute(_DISTINCT_URLS, (last, 1000))
            for (found,) in urls:
                yield found
            if len(urls) < 1000:
                return
            last = urls[-1][0]

    def proxy_pool(self, as_of: date) -> Iterator[pa.RecordBatch]:
        """The pool as it stood at midnight (UTC) opening ``as_of``, in ``url`` order.

        Proxies discovered before that moment, with health rebuilt by replaying, through
        ProxyWhirl's rules, the checks it counted before it (:meth:`histories`): a check
        recorded before the proxy was added is history only, and a seed check counts though
        no history row records it.
        """
        end = day_text(as_of)
        window_start = day_text(as_of - timedelta(days=7))
        histories = self.histories(end)
        try:
            for rows in self.identity_rows(end):
                pool: list[tuple[Any, ...]] = []
                for identity in rows:
                    url, checks = next(histories)
                    assert url == identity[0], "histories follow the identities"
                    pool.append((*identity, *replay(checks, window_start)))
                yield rows_to_batch(pool, POOL_SCHEMA, table="proxy_identities")
        finally:
            histories.close()


def _in_time_order(rows: list[tuple[Any, ...]]) -> list[Check]:
    """One proxy's rows (url, id, validated_at, is_valid, latency), read in id order, as
    checks in ``(validated_at, id)`` order: SQLite's order for DATETIME text."""
    ordered = all(rows[i][2] <= rows[i + 1][2] for i in range(len(rows) - 1))
    if not ordered:
        rows = sorted(rows, key=lambda row: (row[2], row[1]))
    return [(row[2], row[3], row[4]) for row in rows]


def _in_id_order(rows: list[tuple[Any, ...]]) -> list[Check]:
    """One proxy's rows, read in id order, as checks in that order: ProxyWhirl's."""
    return [(row[2], row[3], row[4]) for row in rows]


def rows_to_batch(rows: list[tuple[Any, ...]], schema: pa.Schema, *, table: str) -> pa.RecordBatch:
    """Turn SQLite rows into a batch of ``schema``; DATETIME text and 0/1 are converted."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = []
    for field, values in zip(schema, columns, strict=True):
        name = f"{table}.{field.name}"
        try:
            if field.type == TIMESTAMP_UTC:
                arrays.append(parse_utc_text(arrow_array(values, pa.string()), name))
            elif field.type == pa.bool_():
                arrays.append(arrow_array(values, pa.int8()).cast(pa.bool_()))
            else:
                arrays.append(arrow_array(values, field.type))
        except TimestampError as exc:
            raise SourceError(str(exc)) from exc
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise SourceError(
                f"{name} holds a value that is not {field.type} ({exc}): is this a ProxyWhirl "
                "database?"
            ) from exc
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
