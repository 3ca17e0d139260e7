"""``validation_results`` of one UTC day: the events as Arrow batches, and metrics of them.

A day D is ``[D 00:00:00, D+1 00:00:00)`` UTC, selected by comparing ProxyWhirl's DATETIME
text (``validated_at >= 'D' AND validated_at < 'D+1'``, see ``timestamps.day_text``).

Every read is bounded by the snapshot's watermark (``id <= watermark``, see
``SourceSnapshot``) and made of short statements, each fully fetched before the next, so no
read holds SQLite's lock for more than milliseconds, in rollback-journal or WAL mode, and a
live ProxyWhirl never waits long to commit. The day's smallest and largest id come from
the ``validated_at`` index, a slice at a time (``id_range_between``); the rows are then
read as consecutive ``id`` ranges (``IdRanges``), filtered on ``validated_at`` again. That
is correct whatever the ids are (a row of D always lies in the range; rows of other days
in it are filtered out) and, since ProxyWhirl's ids grow with time, it reads the day's rows
in table order with no index lookups and no sort. With filters, the range is that of the
rows that pass them. Output batches are re-cut to ``batch_rows`` rows, so files do not
depend on how the ranges fell.

The rows are read into Arrow without a Python object per row: through the ADBC SQLite driver
(``adbc_driver_sqlite``, by ADBC's low-level API: its DB-API layer imports pandas), on a
second read-only connection (``mode=ro``, the snapshot's busy timeout), each id range in a
read transaction of its own. Bounded by the watermark, its rows are the snapshot's in any
journal mode. The driver types each column from the first
batch of a statement; a batch whose columns are not of the types ProxyWhirl writes (text in
a latency, a blob, an is_valid other than 0/1), and the rest of a range after a value whose
type differs from its first batch's, is read again through ``sqlite3``, so it converts, or
fails naming the value, exactly as before.

The day's metrics are ``export_assets.lib.source.metrics``.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import queue
import struct
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from export_assets.lib.source.arrays import int64_values
from export_assets.lib.source.database import (
    TAKE_READ_LOCK,
    ChunkSizer,
    SourceError,
    SourceSnapshot,
    rows_to_batch,
    take_read_lock,
)
from export_assets.lib.source.timestamps import (
    TIMESTAMP_UTC,
    TimestampError,
    day_text,
    parse_utc_text,
)

TABLE = "validation_results"
_T = TypeVar("_T")

VALIDATION_EVENTS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("proxy_url", pa.string(), nullable=False),
        pa.field("validated_at", TIMESTAMP_UTC, nullable=False),
        pa.field("is_valid", pa.bool_(), nullable=False),
        pa.field("response_time_ms", pa.float64()),
        pa.field("error_type", pa.string()),
        pa.field("error_message", pa.string()),
    ]
)
"""One validation result, as ProxyWhirl recorded it."""

ERROR_TYPES = (
    "timeout",
    "connection_refused",
    "ssl_error",
    "proxy_error",
    "http_error",
    "dns_error",
)
"""The ``error_type`` values ProxyWhirl reports; each has its own metrics column."""


_EVENT_COLUMNS = ", ".join(VALIDATION_EVENTS_SCHEMA.names)
DAY_CONDITION = "validated_at >= ? AND validated_at < ?"
_LATENCY_SCHEMA = pa.schema(
    [pa.field("proxy_url", pa.string()), pa.field("response_time_ms", pa.float64())]
)


@dataclass(frozen=True)
class ValidationFilters:
    """Which of a day's validation results to read; None means no restriction."""

    proxy_urls: tuple[str, ...] | None = None
    is_valid: bool | None = None
    error_types: tuple[str, ...] | None = None

    def sql(self) -> tuple[str, list[Any]]:
        """The filters as SQL conditions (each after `` AND ``) and their parameters."""
        conditions: list[str] = []
        parameters: list[Any] = []
        if self.proxy_urls is not None:
            # ``+``: a rowid or validated_at range drives the read, not the url index.
            conditions.append(f"+proxy_url IN ({_marks(self.proxy_urls)})")
            parameters.extend(self.proxy_urls)
        if self.is_valid is not None:
            conditions.append("(is_valid <> 0) = ?")
            parameters.append(int(self.is_valid))
        if self.error_types is not None:
            conditions.append(f"error_type IN ({_marks(self.error_types)})")
            parameters.extend(self.error_types)
        return "".join(f" AND {condition}" for condition in conditions), parameters


NO_FILTERS = ValidationFilters()


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


def day_bounds(day: date) -> list[str]:
    return [day_text(day), day_text(day + timedelta(days=1))]


def validation_id_range(
    snapshot: SourceSnapshot, day: date, filters: ValidationFilters = NO_FILTERS
) -> tuple[int, int] | None:
    """Smallest and largest id (up to the watermark) of the day's validation results that
    pass ``filters``."""
    where, parameters = filters.sql()
    low, high = day_bounds(day)
    return id_range_between(snapshot, low, high, where, parameters)


def id_range_between(
    snapshot: SourceSnapshot,
    low: str,
    high: str,
    where: str = "",
    parameters: Sequence[Any] = (),
) -> tuple[int, int] | None:
    """Smallest and largest id (up to the watermark) of the results with ``low <=
    validated_at < high`` (days as ``day_text``) and the conditions ``where``.

    The two halves of the span are looked at side by side, the later one on a thread of its
    own through a twin connection (SQLite lets go of Python's lock while it reads): the
    whole scan is SQLite's work, and it comes before the first row is read (0.44 s on one
    core for the 1M-row day). Every result lies in exactly one half, whatever its text.
    """
    middle = _middle(low, high)
    if middle is None:
        return _id_range(snapshot, low, high, where, parameters)
    twin = snapshot.twin()
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="id range") as pool:
            later = pool.submit(_id_range, twin, middle, high, where, parameters)
            halves = [_id_range(snapshot, low, middle, where, parameters), later.result()]
    finally:
        twin.close()
        snapshot.reads.add(twin.reads)
    found = [half for half in halves if half is not None]
    if not found:
        return None
    return min(half[0] for half in found), max(half[1] for half in found)


def _middle(low: str, high: str) -> str | None:
    """A text between two day bounds that halves the span (noon of a single day); None
    when they are not ``day_text`` days a day or more apart."""
    try:
        first, last = date.fromisoformat(low), date.fromisoformat(high)
    except ValueError:
        return None
    days = (last - first).days
    if days < 1:
        return None
    if days == 1:
        return f"{low} 12"  # after every text of the morning, before every one of the afternoon
    return day_text(first + timedelta(days=days // 2))


def _id_range(
    snapshot: SourceSnapshot,
    low: str,
    high: str,
    where: str,
    parameters: Sequence[Any],
) -> tuple[int, int] | None:
    """:func:`id_range_between` of one span, on one connection.

    The ``validated_at`` index is read a slice at a time, each slice its own short read: a
    slice ends at the value ``chunk_rows`` entries on, with every row of that value, so no
    row is missed or counted twice whatever the ids and however many rows share a time.
    """
    lowest: int | None = None
    highest: int | None = None
    start, after = low, ">="
    sizer = ChunkSizer(snapshot.chunk_rows, grow=8)  # index entries, two numbers read
    while True:
        with snapshot.short_read():  # both reads of a slice take the lock once
            row = snapshot.execute_inside(
                f"SELECT validated_at FROM {TABLE} WHERE validated_at {after} ?"
                " AND validated_at < ? ORDER BY validated_at LIMIT 1 OFFSET ?",
                (start, high, sizer.rows - 1),
            ).fetchone()
            upto, bound = (
                ("validated_at < ?", high) if row is None else ("validated_at <= ?", row[0])
            )
            found = snapshot.execute_inside(
                f"SELECT min(id), max(id) FROM {TABLE}"
                f" WHERE validated_at {after} ? AND {upto} AND +id <= ?{where}",
                [start, bound, snapshot.id_limit, *parameters],
            ).fetchone()
        sizer.took(snapshot.last_held, sizer.rows)
        if found is not None and found[0] is not None:
            lowest = int(found[0]) if lowest is None else min(lowest, int(found[0]))
            highest = int(found[1]) if highest is None else max(highest, int(found[1]))
        if row is None:
            break
        start, after = row[0], ">"
    return None if lowest is None or highest is None else (lowest, highest)


def validation_events_query(
    day: date, ids: tuple[int, int], filters: ValidationFilters = NO_FILTERS
) -> tuple[str, list[Any]]:
    """The SQL (and its parameters) that reads the day's results in ``ids``, in id order.

    A rowid range, not the ``validated_at`` index: the index would need a lookup per row
    and a sort by id afterwards.
    """
    where, parameters = filters.sql()
    return (
        f"SELECT {_EVENT_COLUMNS} FROM {TABLE}"
        f" WHERE id >= ? AND id <= ? AND {DAY_CONDITION}{where} ORDER BY id",
        [*ids, *day_bounds(day), *parameters],
    )


class IdRanges:
    """``ids`` (capped at the watermark) as consecutive ranges, each sized so that reading
    it takes about ``TARGET_READ_SECONDS``: the reader reports each read with ``took``."""

    def __init__(self, snapshot: SourceSnapshot, ids: tuple[int, int], *, grow: int = 4) -> None:
        self._low, self._high = ids[0], min(ids[1], snapshot.id_limit)
        self._sizer = ChunkSizer(snapshot.chunk_rows, grow=grow)
        self._last = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        while self._low <= self._high:
            top = min(self._high, self._low + self._sizer.rows - 1)
            self._last = top - self._low + 1
            yield self._low, top
            self._low = top + 1

    def took(self, seconds: float) -> None:
        """The read of the last range took ``seconds``."""
        self._sizer.took(seconds, self._last)


def timed_read(
    ranges: IdRanges, snapshot: SourceSnapshot, read: Callable[..., _T], *arguments: Any
) -> _T:
    """``read(*arguments)``, how long it held the lock (``snapshot.last_held``) reported
    to ``ranges``."""
    snapshot.last_held = 0.0
    result = read(*arguments)
    ranges.took(snapshot.last_held)
    return result


def validation_events(
    snapshot: SourceSnapshot,
    day: date,
    ids: tuple[int, int] | None,
    filters: ValidationFilters = NO_FILTERS,
) -> Iterator[pa.RecordBatch]:
    """The day's validation results that pass ``filters``, in ``id`` order, in batches of
    ``batch_rows`` rows.

    ``ids`` is what :func:`validation_id_range` returned for the same day and filters on
    the same snapshot (None: there is nothing to read). The rows are read one id range at
    a time, each range wholly fetched (and its statement finished) before its batches go
    on, so SQLite's lock is held only while a range is read, in any journal mode; every
    range is under the watermark, so the rows are the snapshot's.
    """
    if ids is None:
        return
    yield from _rebatched(_arrow_events(snapshot, day, ids, filters), snapshot.batch_rows)


def _arrow_events(
    snapshot: SourceSnapshot, day: date, ids: tuple[int, int], filters: ValidationFilters
) -> Iterator[pa.RecordBatch]:
    where, parameters = filters.sql()
    sql = (
        f"{_TYPE_ROW} UNION ALL SELECT * FROM (SELECT {_EVENT_COLUMNS} FROM {TABLE}"
        f" WHERE id >= ? AND id <= ? AND {DAY_CONDITION}{where} ORDER BY id)"
    )
    ranges = IdRanges(snapshot, ids)
    with arrow_connection(snapshot) as connection:
        for low, high in ranges:
            done = low - 1  # the last id handed on
            bound = [low, high, *day_bounds(day), *parameters]
            try:
                raws = _after_type_row(
                    timed_read(
                        ranges,
                        snapshot,
                        arrow_batches,
                        snapshot,
                        connection,
                        sql,
                        bound,
                        (low, high),
                    )
                )
            except TypeChanged:
                raws = None
            if raws is None:
                # A later batch holds a value of another type than the first (or the rows
                # came out of id order): the range by rows, which converts it or names it.
                yield from _row_range(snapshot, day, (low, high), filters)
                continue
            for raw in raws:
                if raw.num_rows == 0:
                    continue
                last = raw.column(0)[-1].as_py()
                if _as_proxywhirl_writes(raw):
                    yield _typed_events(raw)
                else:
                    # Values ProxyWhirl does not write: the row reader converts them or names them.
                    yield from _row_range(snapshot, day, (done + 1, last), filters)
                done = last


def _events_by_rows(
    snapshot: SourceSnapshot, day: date, ids: tuple[int, int], filters: ValidationFilters
) -> Iterator[pa.RecordBatch]:
    """The events through the snapshot's own connection, a tuple per row, by id range."""
    ranges = IdRanges(snapshot, ids)

    def read(chunk: tuple[int, int]) -> list[pa.RecordBatch]:
        return timed_read(ranges, snapshot, lambda: list(_row_range(snapshot, day, chunk, filters)))

    yield from _rebatched((b for chunk in ranges for b in read(chunk)), snapshot.batch_rows)


def _row_range(
    snapshot: SourceSnapshot, day: date, ids: tuple[int, int], filters: ValidationFilters
) -> Iterator[pa.RecordBatch]:
    """One id range's events, read whole through ``sqlite3`` and then converted."""
    rows = fetched(snapshot, *validation_events_query(day, ids, filters))
    for start in range(0, len(rows), snapshot.batch_rows):
        yield as_batch(rows[start : start + snapshot.batch_rows], VALIDATION_EVENTS_SCHEMA)


def _rebatched(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """``batches`` cut and joined into batches of ``rows`` rows (the last may be shorter):
    a file's row groups do not depend on how the source was read."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        if not pending and batch.num_rows == rows:
            yield batch
            continue
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            joined = pa.concat_batches(pending)
            start = 0
            while count - start >= rows:
                yield joined.slice(start, rows)
                start += rows
            pending = [joined.slice(start)] if start < count else []
            count -= start
    if count:
        yield pa.concat_batches(pending)


# The driver takes each column's type from its first batch, so a column that starts with a
# batch of NULLs (a morning without errors) would be typed as integers and its first text
# would fail the read. Each range's rows therefore come after one constant row of
# ProxyWhirl's types, which fixes them; its id is below every rowid, and it is dropped.
# (Reading each nullable column as ``ifnull(...)`` and ``... IS NULL`` did the same at twice
# the driver's time: 2.0 s against 1.0 s of CPU for the 1M-row day.)
_TYPE_ROW_ID = -(2**63)
_TYPE_ROW = (
    f"SELECT {_TYPE_ROW_ID} AS id, '' AS proxy_url, '' AS validated_at, 0 AS is_valid,"
    " 0.0 AS response_time_ms, '' AS error_type, '' AS error_message"
)
_ARROW_EVENT_TYPES = [
    pa.int64(),
    pa.string(),
    pa.string(),
    pa.int64(),
    pa.float64(),
    pa.string(),
    pa.string(),
]


def _after_type_row(raws: list[pa.RecordBatch]) -> list[pa.RecordBatch] | None:
    """The rows read after the type row, or None if they did not come after it in id
    order: SQLite promises no order for a compound select without an ORDER BY of its own
    (it reads a rowid range in order; the row reader, with its ORDER BY, reads any other)."""
    if not raws or not raws[0].num_rows or raws[0].column(0)[0].as_py() != _TYPE_ROW_ID:
        return None
    rows = [raws[0].slice(1), *raws[1:]]
    ids = np.concatenate([int64_values(batch.column(0)) for batch in rows])
    return rows if bool((ids[1:] > ids[:-1]).all()) else None


class TypeChanged(Exception):
    """The driver met a value whose type differs from its first batch's in that column."""


def _as_proxywhirl_writes(raw: pa.RecordBatch) -> bool:
    """Whether every column has the type ProxyWhirl writes and is_valid is 0 or 1.

    Anything else (text latencies, blobs, a NULL column) goes to the row reader, which
    converts what it can and names what it cannot, as it always has.
    """
    if raw.schema.types != _ARROW_EVENT_TYPES:
        return False
    low, high = pc.min_max(raw.column(3)).values()
    return bool(raw.column(3).null_count == 0 and low.as_py() >= 0 and high.as_py() <= 1)


class ArrowConnection:
    """A second read-only connection to the snapshot's database, through ADBC's low-level
    API (``adbc_driver_manager``): its DB-API layer imports ``pyarrow.dataset``, which
    imports pandas (some 35 MiB and 0.4 s) for nothing this reader uses."""

    def __init__(self, database: Any, connection: Any) -> None:
        self._database = database
        self.connection = connection

    def statement(self, sql: str, parameters: Sequence[Any] = ()) -> Any:
        """A statement of ``sql`` with ``parameters`` bound; the caller closes it."""
        import adbc_driver_manager

        statement = adbc_driver_manager.AdbcStatement(self.connection)
        try:
            statement.set_sql_query(sql)
            if parameters:
                statement.bind(_parameters(parameters))
        except BaseException:
            statement.close()
            raise
        return statement

    def run(self, sql: str) -> None:
        """Run a statement of no parameters and read its rows to the end (a lock probe
        reads its row: that is what takes SQLite's read lock)."""
        statement = self.statement(sql)
        try:
            handle, _ = statement.execute_query()
            for _ in pa.RecordBatchReader.from_stream(handle):
                pass
        finally:
            statement.close()

    def close(self) -> None:
        self.connection.close()
        self._database.close()


@contextlib.contextmanager
def arrow_connection(snapshot: SourceSnapshot) -> Iterator[ArrowConnection]:
    """A second read-only connection to the snapshot's database, for ADBC's Arrow reader."""
    import adbc_driver_manager  # heavy: only when events are read
    import adbc_driver_sqlite

    uri = f"file:{quote(str(snapshot.path.resolve()))}?mode=ro"
    try:
        database = adbc_driver_sqlite.connect(uri)
        try:
            connection = ArrowConnection(database, adbc_driver_manager.AdbcConnection(database))
        except BaseException:
            database.close()
            raise
    except Exception as exc:  # the driver's errors derive from several bases
        raise SourceError(
            f"cannot open ProxyWhirl database {snapshot.path} read-only: {exc}"
        ) from exc
    try:
        connection.run("PRAGMA busy_timeout = 0")  # take_read_lock waits, polling (see there)
        yield connection
    finally:
        connection.close()


def _parameters(values: Sequence[Any]) -> pa.RecordBatch:
    """One row of statement parameters as a batch, built from buffers: ``pa.array`` on
    Python values asks pyarrow's pandas shim whether they are pandas objects, and that
    imports pandas."""
    columns = [_parameter(value) for value in values]
    return pa.RecordBatch.from_arrays(columns, names=[str(i) for i in range(len(columns))])


def _parameter(value: Any) -> pa.Array:
    if value is None:
        return pa.nulls(1)
    if isinstance(value, bool | int):
        return pa.Array.from_buffers(pa.int64(), 1, [None, pa.py_buffer(struct.pack("<q", value))])
    if isinstance(value, float):
        return pa.Array.from_buffers(
            pa.float64(), 1, [None, pa.py_buffer(struct.pack("<d", value))]
        )
    if isinstance(value, str | bytes):
        data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        kind = pa.string() if isinstance(value, str) else pa.binary()
        offsets = pa.py_buffer(struct.pack("<ii", 0, len(data)))
        return pa.Array.from_buffers(kind, 1, [None, offsets, pa.py_buffer(data)])
    raise TypeError(f"a statement parameter of type {type(value).__name__}: {value!r}")


def arrow_batches(
    snapshot: SourceSnapshot,
    connection: ArrowConnection,
    sql: str,
    parameters: Sequence[Any],
    ids: tuple[int, int],
) -> list[pa.RecordBatch]:
    """Every row of ``sql`` (rows of the id range ``ids``), read in a read transaction of
    its own and to the end before returning, so no lock is held after;
    ``snapshot.last_held`` is how long the lock was held. Driver errors as SourceErrors."""
    batches: list[pa.RecordBatch] = []
    try:
        connection.run("BEGIN")
        try:
            asked = time.perf_counter()
            take_read_lock(  # waits here for a writer's commit, if any
                lambda: connection.run(TAKE_READ_LOCK), snapshot.busy_timeout_ms
            )
            started = time.perf_counter()
            statement = connection.statement(sql, parameters)
            try:
                # The driver reserves every column for a whole batch before it reads a row:
                # batches no longer than the range (the caller re-cuts them) keep a short
                # range's read from holding a full batch's worth of memory per column.
                rows = max(1, min(snapshot.batch_rows, ids[1] - ids[0] + 1))
                statement.set_options(**{"adbc.sqlite.query.batch_rows": str(rows)})
                handle, _ = statement.execute_query()
                batches.extend(pa.RecordBatchReader.from_stream(handle))
            finally:
                statement.close()
            snapshot.last_held = time.perf_counter() - started
            snapshot.reads.record(started - asked, snapshot.last_held)
        finally:
            connection.run("COMMIT")
        return batches
    except (OSError, pa.ArrowException) as exc:
        if "Type mismatch" in str(exc):
            raise TypeChanged(str(exc)) from exc
        raise _read_error(snapshot, exc) from exc
    except Exception as exc:
        if type(exc).__module__.startswith("adbc_driver"):
            if "Type mismatch" in str(exc):
                raise TypeChanged(str(exc)) from exc
            raise _read_error(snapshot, exc) from exc
        raise


def _read_error(snapshot: SourceSnapshot, exc: BaseException) -> SourceError:
    if "locked" in str(exc) or "busy" in str(exc):
        return SourceError(
            f"ProxyWhirl database {snapshot.path} stayed locked by a writer past the busy "
            f"timeout ({exc}); retry, or raise busy_timeout_ms"
        )
    return SourceError(f"reading ProxyWhirl database {snapshot.path} failed: {exc}")


def _typed_events(raw: pa.RecordBatch) -> pa.RecordBatch:
    """A batch read by ``_arrow_events`` that passed ``_as_proxywhirl_writes``, as
    VALIDATION_EVENTS_SCHEMA."""
    columns = raw.columns
    try:
        # ProxyWhirl's own form (naive UTC, no suffix) casts directly; any other form fails
        # the cast and takes parse_utc_text's regex path, so the result is the same.
        validated_at = pc.cast(columns[2], pa.timestamp("us")).cast(TIMESTAMP_UTC)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        try:
            validated_at = parse_utc_text(columns[2], f"{TABLE}.validated_at")
        except TimestampError as exc:
            raise SourceError(str(exc)) from exc
    arrays = [columns[0], columns[1], validated_at, columns[3].cast(pa.bool_()), *columns[4:]]
    return pa.RecordBatch.from_arrays(arrays, schema=VALIDATION_EVENTS_SCHEMA)


RELEASE_EVERY = 8
"""Batches between two hand-backs of freed Arrow memory (``read_ahead``)."""


def read_ahead(
    batches: Iterator[pa.RecordBatch], depth: int = 2
) -> Generator[pa.RecordBatch, None, None]:
    """``batches``, produced by a thread up to ``depth`` batches ahead of the consumer.

    Reading SQLite and building batches then overlaps with what the consumer does to them
    (formatting, compressing, uploading), as SQLite, Arrow and zlib release the GIL. An
    error of ``batches`` is raised here, as it was raised there. Closing this generator
    stops the thread and waits for it: close it before the snapshot it reads.

    Every ``RELEASE_EVERY`` batches, each thread hands the Arrow memory it freed back to the
    system (``release_unused``): an allocator keeps freed pages for reuse (mimalloc per
    thread; malloc in arenas), which otherwise made the export's peak RSS some 5-20 MiB
    higher than what it ever held. Not after every batch: trimming malloc's arenas costs
    more CPU the more often it is done (0.5 s over the 1M-row day with 8,192-row batches).
    """
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    pool = pa.default_memory_pool()

    def produce() -> None:
        try:
            for n, batch in enumerate(batches, 1):
                handoff.put(("batch", batch))
                del batch  # the consumer's now: what this thread freed can go
                if n % RELEASE_EVERY == 0:
                    pool.release_unused()
                if stop.is_set():
                    return
            handoff.put(("end", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            handoff.put(("error", exc))
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="validation_results reader", daemon=True)
    thread.start()
    try:
        for n in itertools.count(1):
            kind, value = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
            del value  # written: what this thread freed for it can go
            if n % RELEASE_EVERY == 0:
                pool.release_unused()
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting to hand over one more batch
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.05)
        thread.join()


def fetched(snapshot: SourceSnapshot, sql: str, parameters: Sequence[Any]) -> list[Any]:
    """Every row of one statement, read through the snapshot's connection.

    The garbage collector is paused meanwhile: the row tuples hold no cycles and go with
    their last reference, but allocating a million of them triggers collections that
    re-walk the whole process heap (Dagster's is large), which doubled the read time.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return snapshot.execute(sql, parameters)
    finally:
        if collecting:
            gc.enable()


def as_batch(rows: list[Any], schema: pa.Schema) -> pa.RecordBatch:
    collecting = gc.isenabled()
    gc.disable()
    try:
        return rows_to_batch(rows, schema, table=TABLE)
    finally:
        if collecting:
            gc.enable()
