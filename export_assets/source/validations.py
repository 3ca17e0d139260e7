"""``validation_results`` of one UTC day: the events as Arrow batches, and metrics of them.

A day D is ``[D 00:00:00, D+1 00:00:00)`` UTC, selected by comparing ProxyWhirl's DATETIME
text (``validated_at >= 'D' AND validated_at < 'D+1'``, see ``timestamps.day_text``).

Events are read by rowid: the day's smallest and largest id come from the covering
``validated_at`` index, and the rows are then read as one ``id`` range, filtered on
``validated_at`` again. That is correct whatever the ids are (a row of D always lies in the
range; rows of other days in it are filtered out) and, since ProxyWhirl's ids grow with
time, it reads the day's rows in table order with no index lookups and no sort. With
filters, the range is that of the rows that pass them.

The rows are read into Arrow without a Python object per row: through the ADBC SQLite driver
(``adbc_driver_sqlite``), on a second read-only connection (``mode=ro``, the snapshot's busy
timeout) opened while the snapshot's read transaction holds its SHARED lock. In SQLite's
rollback-journal modes (ProxyWhirl's default ``delete``) no writer can commit while that
lock is held, so the second connection reads exactly the snapshot's data. In WAL mode
writers can commit meanwhile, so there the rows come through the snapshot's own
connection (``sqlite3``, a tuple per row, about twice as slow). The driver types each
column from the first batch it reads; a batch whose columns are not of the types
ProxyWhirl writes (text in a latency, a blob, an is_valid other than 0/1), and every batch
after a value whose type differs from the first batch's, is read again through
``sqlite3``, so it converts, or fails naming the value, exactly as before, in the same
batches.

Metrics (``PROXY_METRICS_SCHEMA``), one row per group of the day's checks:

- ``scope`` / ``key``: ``pool`` / ``all`` (every check of the day); ``protocol`` / the
  proxy's protocol; ``country`` / its ``country_code``, ``(none)`` when NULL; ``proxy`` /
  its URL. A check of a proxy that ``proxy_identities`` does not hold counts under
  ``(unknown)`` in the protocol and country scopes. Rows come in that scope order (pool,
  protocol, country, proxy), by key within a scope. A day without checks has no rows.
- ``proxies``: distinct proxies checked; ``checks``, ``successes`` (``is_valid``),
  ``failures``, ``success_rate`` = successes / checks.
- ``latency_*``: over successful checks with a ``response_time_ms`` (``latency_samples``
  of them); null when there are none. ``latency_avg_ms`` is the mean, ``latency_max_ms``
  the largest. Percentiles use linear interpolation between closest ranks (numpy's and
  pandas' default ``linear`` method, DuckDB's ``quantile_cont``): with the n samples
  sorted, x[0] <= ... <= x[n-1], the p-th percentile is at rank h = (n - 1) * p / 100,
  computed exactly in integers, and is x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] -
  x[floor(h)]). For 10, 20, ..., 100: p50 = 55.0, p95 = 95.5.
- ``errors_<type>``: checks whose ``error_type`` is that type, one column per type ProxyWhirl
  reports (``ERROR_TYPES``); ``errors_other`` counts any other non-null ``error_type``.
  Checks without an ``error_type`` count in no error column.

How it is computed, in bounded memory: SQLite aggregates the day per proxy, outcome and
error type (checks, timed checks, latency sum and maximum; a few rows per proxy), joined to
``proxy_identities``; Python folds them per proxy and rolls them up to the other scopes (a
few thousand proxies). Percentiles take one more pass: the day's latencies streamed in
ascending order (SQLite sorts, spilling to its temporary files when needed) while a counter
per group, vectorised per batch, picks the values at exactly the ranks each group's
percentiles need (known from the counts). Memory is a batch plus a few numbers per group,
whatever the size of the day.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
import queue
import sqlite3
import threading
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from export_assets.source.database import SourceError, SourceSnapshot, rows_to_batch
from export_assets.source.timestamps import TIMESTAMP_UTC, TimestampError, day_text, parse_utc_text

_TABLE = "validation_results"

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
    "timeout", "connection_refused", "ssl_error", "proxy_error", "http_error", "dns_error",
)  # fmt: skip
"""The ``error_type`` values ProxyWhirl reports; each has its own metrics column."""

SCOPE_POOL, SCOPE_PROTOCOL, SCOPE_COUNTRY, SCOPE_PROXY = "pool", "protocol", "country", "proxy"
SCOPES = (SCOPE_POOL, SCOPE_PROTOCOL, SCOPE_COUNTRY, SCOPE_PROXY)
POOL_KEY = "all"
NO_COUNTRY = "(none)"
UNKNOWN_PROXY = "(unknown)"
PERCENTILES = (50, 95)

PROXY_METRICS_SCHEMA = pa.schema(
    [
        pa.field("scope", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("proxies", pa.int64(), nullable=False),
        pa.field("checks", pa.int64(), nullable=False),
        pa.field("successes", pa.int64(), nullable=False),
        pa.field("failures", pa.int64(), nullable=False),
        pa.field("success_rate", pa.float64(), nullable=False),
        pa.field("latency_samples", pa.int64(), nullable=False),
        pa.field("latency_avg_ms", pa.float64()),
        pa.field("latency_p50_ms", pa.float64()),
        pa.field("latency_p95_ms", pa.float64()),
        pa.field("latency_max_ms", pa.float64()),
        *(pa.field(f"errors_{name}", pa.int64(), nullable=False) for name in ERROR_TYPES),
        pa.field("errors_other", pa.int64(), nullable=False),
    ]
)
"""Check counts, latency and errors of one group of a day's checks (see the module doc)."""

_EVENT_COLUMNS = ", ".join(VALIDATION_EVENTS_SCHEMA.names)
_DAY = "validated_at >= ? AND validated_at < ?"
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
            conditions.append(f"proxy_url IN ({_marks(self.proxy_urls)})")
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


def _day_bounds(day: date) -> list[str]:
    return [day_text(day), day_text(day + timedelta(days=1))]


def validation_id_range(
    snapshot: SourceSnapshot, day: date, filters: ValidationFilters = NO_FILTERS
) -> tuple[int, int] | None:
    """Smallest and largest id of the day's validation results that pass ``filters``."""
    where, parameters = filters.sql()
    row = snapshot.execute(
        f"SELECT min(id), max(id) FROM {_TABLE} WHERE {_DAY}{where}",
        [*_day_bounds(day), *parameters],
    ).fetchone()
    if row is None or row[0] is None:
        return None
    return int(row[0]), int(row[1])


def validation_events_query(
    day: date, ids: tuple[int, int], filters: ValidationFilters = NO_FILTERS
) -> tuple[str, list[Any]]:
    """The SQL (and its parameters) that reads the day's results in ``ids``, in id order.

    A rowid range, not the ``validated_at`` index: the index would need a lookup per row
    and a sort by id afterwards.
    """
    where, parameters = filters.sql()
    return (
        f"SELECT {_EVENT_COLUMNS} FROM {_TABLE}"
        f" WHERE id >= ? AND id <= ? AND {_DAY}{where} ORDER BY id",
        [*ids, *_day_bounds(day), *parameters],
    )


def validation_events(
    snapshot: SourceSnapshot, day: date, ids: tuple[int, int] | None,
    filters: ValidationFilters = NO_FILTERS,
) -> Iterator[pa.RecordBatch]:  # fmt: skip
    """The day's validation results that pass ``filters``, in ``id`` order.

    ``ids`` is what :func:`validation_id_range` returned for the same day and filters on
    the same snapshot (None: there is nothing to read).
    """
    if ids is None:
        return
    if _journal_mode(snapshot) == "wal":  # a second connection could see later commits
        yield from _events_by_rows(snapshot, day, ids, filters)
        return
    where, parameters = filters.sql()
    sql = (
        f"SELECT {_ARROW_EVENT_COLUMNS} FROM {_TABLE}"
        f" WHERE id >= ? AND id <= ? AND {_DAY}{where} ORDER BY id"
    )
    done = ids[0] - 1  # the last id handed on
    with _arrow_connection(snapshot) as connection:
        parameters = [*ids, *_day_bounds(day), *parameters]
        try:
            for raw in _arrow_batches(snapshot, connection, sql, parameters):
                if raw.num_rows == 0:
                    continue
                last = raw.column(0)[-1].as_py()
                if _as_proxywhirl_writes(raw):
                    yield _typed_events(raw)
                else:
                    # Values ProxyWhirl does not write: the row reader converts them or names them.
                    yield from _events_by_rows(snapshot, day, (done + 1, last), filters)
                done = last
        except _TypeChanged:
            # A later batch holds a value of another type than the first: the rest by rows,
            # from a batch boundary, so the batches stay those of the row reader.
            yield from _events_by_rows(snapshot, day, (done + 1, ids[1]), filters)


def _events_by_rows(
    snapshot: SourceSnapshot, day: date, ids: tuple[int, int], filters: ValidationFilters
) -> Iterator[pa.RecordBatch]:
    """The events through the snapshot's own connection, a tuple per row."""
    cursor = snapshot.execute(*validation_events_query(day, ids, filters))
    while batch := _next_batch(cursor, snapshot.batch_rows, VALIDATION_EVENTS_SCHEMA):
        yield batch


# ProxyWhirl's columns as they are, the nullable ones as a value and an IS NULL flag: the
# driver takes each column's type from the first batch, so a column that starts with a
# batch of NULLs (a morning without errors) would otherwise be typed as integers.
_ARROW_EVENT_COLUMNS = (
    "id, proxy_url, validated_at, is_valid,"
    " ifnull(response_time_ms, 0.0), response_time_ms IS NULL,"
    " ifnull(error_type, ''), error_type IS NULL,"
    " ifnull(error_message, ''), error_message IS NULL"
)
_ARROW_EVENT_TYPES = [
    pa.int64(), pa.string(), pa.string(), pa.int64(),
    pa.float64(), pa.int64(), pa.string(), pa.int64(), pa.string(), pa.int64(),
]  # fmt: skip


class _TypeChanged(Exception):
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


def _journal_mode(snapshot: SourceSnapshot) -> str:
    row = snapshot.execute("PRAGMA journal_mode").fetchone()
    return str(row[0]).lower() if row else ""


@contextlib.contextmanager
def _arrow_connection(snapshot: SourceSnapshot) -> Iterator[Any]:
    """A second read-only connection to the snapshot's database, for ADBC's Arrow reader."""
    import adbc_driver_sqlite.dbapi as adbc_sqlite  # heavy: only when events are read

    row = snapshot.execute("PRAGMA busy_timeout").fetchone()
    timeout_ms = int(row[0]) if row else 0
    uri = f"file:{quote(str(snapshot.path.resolve()))}?mode=ro"
    try:
        connection = adbc_sqlite.connect(uri, autocommit=True)
    except Exception as exc:  # the driver's errors derive from several bases
        raise SourceError(
            f"cannot open ProxyWhirl database {snapshot.path} read-only: {exc}"
        ) from exc
    try:
        cursor = connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms:d}")
        finally:
            cursor.close()
        yield connection
    finally:
        connection.close()


def _arrow_batches(
    snapshot: SourceSnapshot, connection: Any, sql: str, parameters: Sequence[Any]
) -> Iterator[pa.RecordBatch]:
    """Batches of ``snapshot.batch_rows`` rows of ``sql``; driver errors as SourceErrors."""
    cursor = connection.cursor()
    try:
        # Batches of batch_rows, as the row reader makes: a Parquet file's row groups.
        cursor.adbc_statement.set_options(
            **{"adbc.sqlite.query.batch_rows": str(snapshot.batch_rows)}
        )
        cursor.execute(sql, parameters)
        reader = cursor.fetch_record_batch()
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            yield batch
    except (OSError, pa.ArrowException) as exc:
        if "Type mismatch" in str(exc):
            raise _TypeChanged(str(exc)) from exc
        raise _read_error(snapshot, exc) from exc
    except Exception as exc:
        if type(exc).__module__.startswith("adbc_driver"):
            if "Type mismatch" in str(exc):
                raise _TypeChanged(str(exc)) from exc
            raise _read_error(snapshot, exc) from exc
        raise
    finally:
        cursor.close()


def _read_error(snapshot: SourceSnapshot, exc: BaseException) -> SourceError:
    if "locked" in str(exc) or "busy" in str(exc):
        return SourceError(
            f"ProxyWhirl database {snapshot.path} stayed locked by a writer past the busy "
            f"timeout ({exc}); retry, or raise busy_timeout_ms"
        )
    return SourceError(f"reading ProxyWhirl database {snapshot.path} failed: {exc}")


def _typed_events(raw: pa.RecordBatch) -> pa.RecordBatch:
    """A batch of ``_ARROW_EVENT_COLUMNS`` that passed ``_as_proxywhirl_writes``, as
    VALIDATION_EVENTS_SCHEMA."""
    columns = raw.columns
    try:
        # ProxyWhirl's own form (naive UTC, no suffix) casts directly; any other form fails
        # the cast and takes parse_utc_text's regex path, so the result is the same.
        validated_at = pc.cast(columns[2], pa.timestamp("us")).cast(TIMESTAMP_UTC)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        try:
            validated_at = parse_utc_text(columns[2], f"{_TABLE}.validated_at")
        except TimestampError as exc:
            raise SourceError(str(exc)) from exc
    arrays = [
        columns[0],
        columns[1],
        validated_at,
        columns[3].cast(pa.bool_()),
        _with_nulls(columns[4], columns[5]),
        _with_nulls(columns[6], columns[7]),
        _with_nulls(columns[8], columns[9]),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=VALIDATION_EVENTS_SCHEMA)


def _with_nulls(values: pa.Array, is_null: pa.Array) -> pa.Array:
    """``values`` with nulls where ``is_null`` (0/1) is 1, sharing the values' buffers."""
    nulls = pc.cast(is_null, pa.bool_())
    if not pc.any(nulls).as_py():
        return values
    valid = pc.invert(nulls)
    if values.offset or valid.offset:
        return pc.if_else(nulls, pa.scalar(None, values.type), values)
    return pa.Array.from_buffers(
        values.type, len(values), [valid.buffers()[1], *values.buffers()[1:]]
    )


def read_ahead(
    batches: Iterator[pa.RecordBatch], depth: int = 2
) -> Generator[pa.RecordBatch, None, None]:
    """``batches``, produced by a thread up to ``depth`` batches ahead of the consumer.

    Reading SQLite and building batches then overlaps with what the consumer does to them
    (formatting, compressing, uploading), as SQLite, Arrow and zlib release the GIL. An
    error of ``batches`` is raised here, as it was raised there. Closing this generator
    stops the thread and waits for it: close it before the snapshot it reads.
    """
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                handoff.put(("batch", batch))
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
        while True:
            kind, value = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting to hand over one more batch
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.05)
        thread.join()


def _next_batch(cursor: sqlite3.Cursor, rows: int, schema: pa.Schema) -> pa.RecordBatch | None:
    """The cursor's next ``rows`` rows as a batch of ``schema``; None once it is exhausted.

    The garbage collector is paused meanwhile: the row tuples hold no cycles and go with
    their last reference, but allocating a million of them triggers collections that
    re-walk the whole process heap (Dagster's is large), which doubled the read time.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        fetched = cursor.fetchmany(rows)
        return rows_to_batch(fetched, schema, table=_TABLE) if fetched else None
    finally:
        if collecting:
            gc.enable()


# --- metrics --------------------------------------------------------------------------


@dataclass(frozen=True)
class _ProxyTotals:
    """What SQLite aggregated of one proxy's checks, with the proxy's groups."""

    url: str
    protocol: str
    country: str
    checks: int
    successes: int
    samples: int
    latency_sum: float | None
    latency_max: float | None
    errors: tuple[int, ...]  # ERROR_TYPES in order, then other


@dataclass
class _Group:
    """One row of the metrics: a group of checks and the proxies they were made on."""

    scope: str
    key: str
    members: list[_ProxyTotals] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return sum(member.samples for member in self.members)


# Totals per proxy, outcome and error type in one pass over the day (a few rows per proxy,
# folded per proxy in Python); the outer query adds the proxy's groups.
_PROXY_TOTALS_SQL = (
    "SELECT a.*, p.url IS NOT NULL, p.protocol, p.country_code FROM ("
    "SELECT proxy_url, is_valid <> 0 AS valid, error_type, count(*),"
    " count(response_time_ms), sum(response_time_ms), max(response_time_ms)"
    f" FROM {_TABLE} WHERE id >= ? AND id <= ? AND {_DAY} GROUP BY proxy_url, valid, error_type"
    ") AS a LEFT JOIN proxy_identities AS p ON p.url = a.proxy_url ORDER BY a.proxy_url"
)

# Every latency the percentiles are taken over, smallest first.
_LATENCIES_SQL = (
    f"SELECT proxy_url, response_time_ms FROM {_TABLE} WHERE id >= ? AND id <= ? AND {_DAY}"
    " AND is_valid <> 0 AND response_time_ms IS NOT NULL ORDER BY response_time_ms"
)


def proxy_metrics(
    snapshot: SourceSnapshot, day: date, ids: tuple[int, int] | None
) -> Iterator[pa.RecordBatch]:
    """Metrics of the day's checks per pool, protocol, country and proxy (module doc).

    ``ids`` is :func:`validation_id_range` of the day on the same snapshot (None: the day
    has no checks, and the metrics no rows).
    """
    if ids is None:
        return
    proxies = _proxy_totals(snapshot, day, ids)
    groups = _groups(proxies)
    picked = _pick_ranks(snapshot, day, ids, proxies, groups)
    rows = [_metrics_row(group, picked[index]) for index, group in enumerate(groups)]
    for start in range(0, len(rows), snapshot.batch_rows):
        yield rows_to_batch(
            rows[start : start + snapshot.batch_rows], PROXY_METRICS_SCHEMA, table=_TABLE
        )


def _proxy_totals(snapshot: SourceSnapshot, day: date, ids: tuple[int, int]) -> list[_ProxyTotals]:
    cursor = snapshot.execute(_PROXY_TOTALS_SQL, [*ids, *_day_bounds(day)])
    proxies = []
    for url, group in itertools.groupby(cursor.fetchall(), key=lambda row: row[0]):
        parts = list(group)  # one per outcome and error type
        checks = successes = samples = 0
        sums: list[float] = []
        maxima: list[float] = []
        errors = dict.fromkeys(ERROR_TYPES, 0)
        other = 0
        for _, valid, error_type, count, timed, latency_sum, latency_max, *_ in parts:
            checks += count
            if error_type in errors:
                errors[error_type] += count
            elif error_type is not None:
                other += count
            if valid:
                successes += count
                samples += timed
                if timed:
                    sums.append(_latency(latency_sum, snapshot))
                    maxima.append(_latency(latency_max, snapshot))
        known, protocol, country = parts[0][7:]
        proxies.append(
            _ProxyTotals(
                url=url,
                protocol=protocol if known else UNKNOWN_PROXY,
                country=(NO_COUNTRY if country is None else country) if known else UNKNOWN_PROXY,
                checks=checks,
                successes=successes,
                samples=samples,
                latency_sum=math.fsum(sums) if sums else None,
                latency_max=max(maxima) if maxima else None,
                errors=(*errors.values(), other),
            )
        )
    return proxies


def _latency(value: Any, snapshot: SourceSnapshot) -> float:
    # SQLite compares text above every number: max() returns any text the column holds.
    if isinstance(value, int | float):
        return float(value)
    raise SourceError(
        f"{snapshot.path}: {_TABLE}.response_time_ms holds {str(value)[:60]!r}, which is not "
        "a number of milliseconds: is this a ProxyWhirl database?"
    )


def _groups(proxies: list[_ProxyTotals]) -> list[_Group]:
    """Every group, in the order of the rows: pool, protocols, countries, proxies."""
    protocols: dict[str, _Group] = {}
    countries: dict[str, _Group] = {}
    for proxy in proxies:
        protocols.setdefault(proxy.protocol, _Group(SCOPE_PROTOCOL, proxy.protocol))
        protocols[proxy.protocol].members.append(proxy)
        countries.setdefault(proxy.country, _Group(SCOPE_COUNTRY, proxy.country))
        countries[proxy.country].members.append(proxy)
    return [
        _Group(SCOPE_POOL, POOL_KEY, list(proxies)),
        *(protocols[key] for key in sorted(protocols)),
        *(countries[key] for key in sorted(countries)),
        *(_Group(SCOPE_PROXY, proxy.url, [proxy]) for proxy in proxies),
    ]


def _ranks(samples: int) -> list[int]:
    """The ranks whose values the percentiles of ``samples`` values interpolate between."""
    ranks = []
    for percent in PERCENTILES:
        low, part = divmod((samples - 1) * percent, 100)
        ranks += [low, low + 1 if part else low]
    return ranks


def _pick_ranks(
    snapshot: SourceSnapshot, day: date, ids: tuple[int, int], proxies: list[_ProxyTotals],
    groups: list[_Group],
) -> npt.NDArray[np.float64]:  # fmt: skip
    """Per group, the latencies at the ranks :func:`_ranks` names (NaN if it has none).

    One pass over the day's latencies, smallest first: a counter per group gives each value
    its rank in each of its groups, so no group's values are ever held.
    """
    proxy_index = {proxy.url: index for index, proxy in enumerate(proxies)}
    member_of = np.zeros((len(SCOPES), len(proxies)), dtype=np.int64)  # group per scope
    for index, group in enumerate(groups):
        for member in group.members:
            member_of[SCOPES.index(group.scope), proxy_index[member.url]] = index
    targets = np.array(
        [_ranks(group.samples) if group.samples else [-1] * 2 * len(PERCENTILES)
         for group in groups],
        dtype=np.int64,
    )  # fmt: skip
    seen = np.zeros(len(groups), dtype=np.int64)
    picked = np.full(targets.shape, np.nan)
    urls = pa.array(list(proxy_index), pa.string())
    cursor = snapshot.execute(_LATENCIES_SQL, [*ids, *_day_bounds(day)])
    while batch := _next_batch(cursor, snapshot.batch_rows, _LATENCY_SCHEMA):
        which = pc.index_in(batch.column(0), value_set=urls)
        if which.null_count:  # cannot happen inside one read transaction
            raise SourceError(f"{snapshot.path}: validation_results changed while being read")
        codes = member_of[:, which.to_numpy()].ravel()
        values = np.tile(batch.column(1).to_numpy(), len(SCOPES))
        _count_ranks(codes, values, seen, targets, picked)
    expected = np.array([group.samples for group in groups], dtype=np.int64)
    if not np.array_equal(seen, expected):
        raise SourceError(f"{snapshot.path}: validation_results changed while being read")
    return picked


def _count_ranks(
    codes: npt.NDArray[np.int64], values: npt.NDArray[np.float64], seen: npt.NDArray[np.int64],
    targets: npt.NDArray[np.int64], picked: npt.NDArray[np.float64],
) -> None:  # fmt: skip
    """Record the ``values`` (ascending) that fall on a target rank of their group ``codes``.

    ``seen`` (values of each group counted so far) is advanced past this batch.
    """
    order = np.argsort(codes, kind="stable")  # by group, ascending values within each
    codes, values = codes[order], values[order]
    counts = np.bincount(codes, minlength=len(seen))
    starts = np.cumsum(counts) - counts
    ranks = seen[codes] + np.arange(len(codes)) - starts[codes]
    for column in range(targets.shape[1]):
        hits = ranks == targets[codes, column]
        picked[codes[hits], column] = values[hits]
    seen += counts


def _metrics_row(group: _Group, picked: npt.NDArray[np.float64]) -> tuple[Any, ...]:
    members = group.members
    checks = sum(m.checks for m in members)
    successes = sum(m.successes for m in members)
    samples = sum(m.samples for m in members)
    sums = [m.latency_sum for m in members if m.latency_sum is not None]
    maxima = [m.latency_max for m in members if m.latency_max is not None]
    errors = [sum(column) for column in zip(*(m.errors for m in members), strict=True)]
    percentiles = [
        _interpolate(float(picked[2 * i]), float(picked[2 * i + 1]), samples, percent)
        for i, percent in enumerate(PERCENTILES)
    ]
    return (
        group.scope, group.key, len(members), checks, successes, checks - successes,
        successes / checks, samples, math.fsum(sums) / samples if samples else None,
        *percentiles, max(maxima) if maxima else None, *errors,
    )  # fmt: skip


def _interpolate(low: float, high: float, samples: int, percent: int) -> float | None:
    """x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)]), h = (n - 1) p / 100."""
    if samples == 0:
        return None
    part = (samples - 1) * percent % 100
    if part == 0:
        return low
    return low + (high - low) * (part / 100)
