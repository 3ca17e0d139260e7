"""Metrics of one UTC day's ``validation_results``, one row per group of checks.

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

How it is computed, in bounded memory and short reads: SQLite aggregates each id range
of the day per proxy, outcome and error type (checks, timed checks, latency maximum);
Python adds the ranges up per proxy, takes protocol and country from the snapshot's
``proxy_identities``, and rolls them up to the other scopes (a few thousand proxies).
Latencies take two more passes by id range (``RankPicker``): the first sums them per proxy
and error type, one addition at a time in id order as SQLite's ``sum()`` does, and counts
them per group and histogram bucket; the second keeps only the values of the buckets that
hold a wanted rank, which are then sorted. Memory is a range plus the non-empty buckets'
counts and those buckets' values, whatever the size of the day.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from export_assets.lib.source.database import SourceError, SourceSnapshot, rows_to_batch
from export_assets.lib.source.validations import (
    DAY_CONDITION,
    ERROR_TYPES,
    TABLE,
    ArrowConnection,
    IdRanges,
    TypeChanged,
    arrow_batches,
    arrow_connection,
    as_batch,
    day_bounds,
    fetched,
    timed_read,
)

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


@dataclass
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


# Totals per proxy, outcome and error type of one id range of the day (a few rows per
# proxy), added up over the ranges in Python.
_PART_TOTALS_SQL = (
    "SELECT proxy_url, is_valid <> 0, error_type, count(*), count(response_time_ms),"
    f" max(response_time_ms) FROM {TABLE} WHERE id >= ? AND id <= ? AND {DAY_CONDITION}"
    " GROUP BY 1, 2, 3"
)

# The latencies the averages and percentiles are taken over, in id order, with the slot
# of their error type among the successful checks' (0: none).
_LATENCIES_SQL = (
    "SELECT proxy_url, {slot}, response_time_ms FROM {table}"
    " WHERE id >= ? AND id <= ? AND {day} AND is_valid <> 0 AND response_time_ms IS NOT NULL"
    " ORDER BY id"
)
_LATENCY_SCHEMA = pa.schema(
    [
        pa.field("proxy_url", pa.string()),
        pa.field("error_slot", pa.int64()),
        pa.field("response_time_ms", pa.float64()),
    ]
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
    parts = _part_totals(snapshot, day, ids)
    proxies = _proxy_totals(snapshot, parts)
    groups = _groups(proxies)
    picked = _latency_passes(snapshot, day, ids, parts, proxies, groups)
    rows = [_metrics_row(group, picked[index]) for index, group in enumerate(groups)]
    for start in range(0, len(rows), snapshot.batch_rows):
        yield rows_to_batch(
            rows[start : start + snapshot.batch_rows], PROXY_METRICS_SCHEMA, table=TABLE
        )


_Part = tuple[Any, int, Any]  # proxy_url, valid (0/1), error_type


def _part_totals(
    snapshot: SourceSnapshot, day: date, ids: tuple[int, int]
) -> dict[_Part, list[Any]]:
    """Checks, timed checks and largest latency per proxy, outcome and error type."""
    parts: dict[_Part, list[Any]] = {}
    ranges = IdRanges(snapshot, ids)
    for chunk in ranges:
        found = timed_read(
            ranges, snapshot, fetched, snapshot, _PART_TOTALS_SQL, [*chunk, *day_bounds(day)]
        )
        for url, valid, error_type, count, timed, latency_max in found:
            if valid and timed:
                _latency(latency_max, snapshot)  # a text latency is named here
            part = parts.get((url, valid, error_type))
            if part is None:
                parts[(url, valid, error_type)] = [count, timed, latency_max]
            else:
                part[0] += count
                part[1] += timed
                if latency_max is not None and (part[2] is None or latency_max > part[2]):
                    part[2] = latency_max
    return parts


def _proxy_totals(snapshot: SourceSnapshot, parts: dict[_Part, list[Any]]) -> list[_ProxyTotals]:
    """Per proxy (in url order), its parts folded, with its protocol and country as
    ``proxy_identities`` held them when the snapshot opened (latency sums come later)."""
    identities = snapshot.identities
    known = dict(
        zip(
            identities.column("url").to_pylist(),
            zip(
                identities.column("protocol").to_pylist(),
                identities.column("country_code").to_pylist(),
                strict=True,
            ),
            strict=True,
        )
    )
    proxies = []
    for url, group in itertools.groupby(sorted(parts.items(), key=_url_of), key=_url_of):
        checks = successes = samples = 0
        maxima: list[float] = []
        errors = dict.fromkeys(ERROR_TYPES, 0)
        other = 0
        for (_, valid, error_type), (count, timed, latency_max) in group:
            checks += count
            if error_type in errors:
                errors[error_type] += count
            elif error_type is not None:
                other += count
            if valid:
                successes += count
                samples += timed
                if timed:
                    maxima.append(_latency(latency_max, snapshot))
        identity = known.get(url)
        proxies.append(
            _ProxyTotals(
                url=url,
                protocol=UNKNOWN_PROXY if identity is None else identity[0],
                country=UNKNOWN_PROXY
                if identity is None
                else NO_COUNTRY
                if identity[1] is None
                else identity[1],
                checks=checks,
                successes=successes,
                samples=samples,
                latency_sum=None,
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
        f"{snapshot.path}: {TABLE}.response_time_ms holds {str(value)[:60]!r}, which is not "
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


def percentile_ranks(samples: int) -> list[int]:
    """The ranks whose values the percentiles of ``samples`` values interpolate between."""
    ranks = []
    for percent in PERCENTILES:
        low, part = divmod((samples - 1) * percent, 100)
        ranks += [low, low + 1 if part else low]
    return ranks


def _latency_passes(
    snapshot: SourceSnapshot,
    day: date,
    ids: tuple[int, int],
    parts: dict[_Part, list[Any]],
    proxies: list[_ProxyTotals],
    groups: list[_Group],
) -> npt.NDArray[np.float64]:
    """Two passes over the day's latencies, by id range: the first sums them per proxy and
    error type (in id order, one addition at a time, as SQLite's sum() does) and counts
    them per group and histogram bucket (:class:`RankPicker`); the second picks the values
    at the ranks :func:`percentile_ranks` names. Returns those values per group (NaN if none)."""
    proxy_index = {proxy.url: index for index, proxy in enumerate(proxies)}
    member_of = np.zeros((len(SCOPES), len(proxies)), dtype=np.int64)  # group per scope
    for index, group in enumerate(groups):
        for member in group.members:
            member_of[SCOPES.index(group.scope), proxy_index[member.url]] = index
    kinds = sorted(
        {
            error
            for (_, valid, error), total in parts.items()
            if valid and total[1] and error is not None
        },
        key=lambda error: (type(error).__name__, error),
    )
    slots = len(kinds) + 1
    cases = " ".join(f"WHEN ? THEN {slot}" for slot in range(1, slots))
    slot_sql = f"CASE error_type {cases} ELSE 0 END" if kinds else "0"
    sql = _LATENCIES_SQL.format(slot=slot_sql, table=TABLE, day=DAY_CONDITION)
    urls = pa.array(list(proxy_index), pa.string())
    sums = np.zeros(len(proxies) * slots)
    picker = RankPicker(len(groups))

    def latencies() -> Iterator[
        tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]
    ]:
        ranges = IdRanges(snapshot, ids)
        with arrow_connection(snapshot) as connection:
            for chunk in ranges:
                bound = [*kinds, *chunk, *day_bounds(day)]
                batch = _latency_range(snapshot, ranges, connection, sql, bound, chunk)
                if batch is None:
                    continue
                which = pc.index_in(batch.column(0), value_set=urls)
                if which.null_count:  # a check the totals did not count
                    raise SourceError(
                        f"{snapshot.path}: validation_results changed while being read"
                    )
                proxy = which.to_numpy().astype(np.int64)
                yield proxy, batch.column(1).to_numpy(), batch.column(2).to_numpy()

    for proxy, slot, values in latencies():
        np.add.at(sums, proxy * slots + slot, values)
        picker.count(member_of[:, proxy], values)
    expected = np.array([group.samples for group in groups], dtype=np.int64)
    if not np.array_equal(picker.totals(), expected):
        raise SourceError(f"{snapshot.path}: validation_results changed while being read")
    for index, proxy_totals in enumerate(proxies):
        if proxy_totals.samples:
            timed = [0] + [
                slot
                for slot, error in enumerate(kinds, 1)
                if parts.get((proxy_totals.url, 1, error), (0, 0))[1]
            ]
            proxy_totals.latency_sum = math.fsum(sums[index * slots + s] for s in timed)
    targets = np.array(
        [
            percentile_ranks(group.samples) if group.samples else [-1] * 2 * len(PERCENTILES)
            for group in groups
        ],
        dtype=np.int64,
    ).reshape(len(groups), 2 * len(PERCENTILES))
    picker.want(targets)
    for proxy, _, values in latencies():
        picker.collect(member_of[:, proxy], values)
    return picker.picked()


def _latency_range(
    snapshot: SourceSnapshot,
    ranges: IdRanges,
    connection: ArrowConnection,
    sql: str,
    bound: list[Any],
    ids: tuple[int, int],
) -> pa.RecordBatch | None:
    """One id range's latencies as a ``_LATENCY_SCHEMA`` batch (None if it has none):
    through ADBC into Arrow (no Python object per row, so the lock is held briefly), or
    through ``sqlite3`` when the driver types a column otherwise."""
    try:
        raws = timed_read(ranges, snapshot, arrow_batches, snapshot, connection, sql, bound, ids)
    except TypeChanged:
        raws = None
    if raws is not None and all(raw.schema.types == _LATENCY_SCHEMA.types for raw in raws):
        kept = [raw for raw in raws if raw.num_rows]
        if not kept:
            return None
        joined = pa.concat_batches(kept) if len(kept) > 1 else kept[0]
        return pa.RecordBatch.from_arrays(joined.columns, schema=_LATENCY_SCHEMA)
    rows = timed_read(ranges, snapshot, fetched, snapshot, sql, bound)
    return as_batch(rows, _LATENCY_SCHEMA) if rows else None


class RankPicker:
    """The values at chosen ranks (in ascending order) of groups of float64 numbers,
    exactly, in two passes over the numbers, whatever their number.

    Pass one (:meth:`count`) counts each group's numbers per histogram bucket (the top 16
    bits of an order-preserving 64-bit key: 1/16 of a binary octave); :meth:`want` then
    finds the bucket and the rank within it of every wanted rank; pass two
    (:meth:`collect`) keeps only the numbers of those buckets, and :meth:`picked` sorts
    them. Memory: the non-empty (group, bucket) counts and the numbers that share a bucket
    with a wanted rank, never the whole of the numbers.
    """

    _BUCKET_BITS = 16

    def __init__(self, groups: int) -> None:
        self.groups = groups
        self._keys: list[npt.NDArray[np.int64]] = []
        self._counts: list[npt.NDArray[np.int64]] = []
        self._pending = 0
        self._wanted: npt.NDArray[np.int64] = np.zeros(0, np.int64)
        self._target_keys: npt.NDArray[np.int64] = np.zeros((0, 0), np.int64)
        self._target_ranks: npt.NDArray[np.int64] = np.zeros((0, 0), np.int64)
        self._found_keys: list[npt.NDArray[np.int64]] = []
        self._found_values: list[npt.NDArray[np.float64]] = []

    def _bucket_keys(
        self, codes: npt.NDArray[np.int64], values: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.int64]:
        """(group << 16 | bucket) for each code (rows: one group per row) and value."""
        bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
        ordered = np.where(bits >> np.uint64(63), ~bits, bits | np.uint64(1 << 63))
        buckets = (ordered >> np.uint64(64 - self._BUCKET_BITS)).astype(np.int64)
        return (np.atleast_2d(codes).astype(np.int64) << self._BUCKET_BITS) | buckets

    def count(self, codes: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> None:
        """Pass one: ``values`` belong to the groups ``codes`` (one row of codes per scope)."""
        keys, counts = np.unique(self._bucket_keys(codes, values), return_counts=True)
        self._keys.append(keys)
        self._counts.append(counts.astype(np.int64))
        self._pending += len(keys)
        if self._pending > 1 << 20:
            self._merge()

    def _merge(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        if not self._keys:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        keys, inverse = np.unique(np.concatenate(self._keys), return_inverse=True)
        counts = np.zeros(len(keys), np.int64)
        np.add.at(counts, inverse.ravel(), np.concatenate(self._counts))
        self._keys, self._counts, self._pending = [keys], [counts], len(keys)
        return keys, counts

    def totals(self) -> npt.NDArray[np.int64]:
        """How many numbers each group has (after pass one)."""
        keys, counts = self._merge()
        totals = np.zeros(self.groups, np.int64)
        np.add.at(totals, keys >> self._BUCKET_BITS, counts)
        return totals

    def want(self, targets: npt.NDArray[np.int64]) -> None:
        """The ranks to pick: one row per group, -1 for none."""
        keys, counts = self._merge()
        ends = np.cumsum(counts)
        first = np.searchsorted(keys >> self._BUCKET_BITS, np.arange(self.groups), "left")
        before = np.concatenate(([0], ends))[first]  # numbers of the groups before each
        wanted = targets >= 0
        absolute = (before[:, None] + targets)[wanted]
        at = np.searchsorted(ends, absolute, side="right")
        self._target_keys = np.full(targets.shape, -1, np.int64)
        self._target_ranks = np.zeros(targets.shape, np.int64)
        self._target_keys[wanted] = keys[at]
        self._target_ranks[wanted] = absolute - (ends[at] - counts[at])
        self._wanted = np.unique(keys[at])

    def collect(self, codes: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> None:
        """Pass two: the same numbers as pass one, in any order."""
        keys = self._bucket_keys(codes, values)
        spread = np.broadcast_to(values, keys.shape)
        hits = np.isin(keys, self._wanted)
        self._found_keys.append(keys[hits])
        self._found_values.append(spread[hits])

    def picked(self) -> npt.NDArray[np.float64]:
        """The value at each wanted rank (NaN where none was wanted)."""
        keys = np.concatenate([np.zeros(0, np.int64), *self._found_keys])
        values = np.concatenate([np.zeros(0), *self._found_values])
        order = np.lexsort((values, keys))
        keys, values = keys[order], values[order]
        picked = np.full(self._target_keys.shape, np.nan)
        wanted = self._target_keys >= 0
        starts = np.searchsorted(keys, self._target_keys[wanted], "left")
        picked[wanted] = values[starts + self._target_ranks[wanted]]
        return picked


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
        group.scope,
        group.key,
        len(members),
        checks,
        successes,
        checks - successes,
        successes / checks,
        samples,
        math.fsum(sums) / samples if samples else None,
        *percentiles,
        max(maxima) if maxima else None,
        *errors,
    )


def _interpolate(low: float, high: float, samples: int, percent: int) -> float | None:
    """x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)]), h = (n - 1) p / 100."""
    if samples == 0:
        return None
    part = (samples - 1) * percent % 100
    if part == 0:
        return low
    return low + (high - low) * (part / 100)


def _url_of(item: tuple[_Part, list[Any]]) -> Any:
    return item[0][0]
