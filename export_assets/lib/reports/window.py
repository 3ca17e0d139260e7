"""The numbers of a weekly report: the 7 UTC days ending on D, and the 7 days before them.

Everything is read from one source snapshot, so every figure of a report describes the same
data. Pool figures (size, health statuses, composition) are the pool as of the end of a
day, rebuilt from the append-only history with ProxyWhirl's rules, as ``proxy_list`` does;
check figures (checks, success rate, latency percentiles, errors) count the checks made
during the days, as ``proxy_metrics`` does, with the same percentile rule (linear
interpolation between closest ranks, computed exactly in integers).

SQLite does the heavy work (aggregation, sorting); Python holds a few numbers per proxy, so
a pool of 100,000 proxies costs seconds and tables stay bounded (``TOP_PROXIES``,
``TOP_ERRORS``, ``TOP_SOURCES``...).
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from export_assets.lib.security.credentials import mask_url_credentials
from export_assets.lib.source.changes import orphans
from export_assets.lib.source.database import ChunkSizer, SourceSnapshot, rows_to_batch
from export_assets.lib.source.metrics import NO_COUNTRY, PERCENTILES, RankPicker, percentile_ranks
from export_assets.lib.source.status import (
    DEAD,
    DEAD_AFTER_FAILURES,
    HEALTH_STATUSES,
    HEALTHY,
    UNHEALTHY,
    UNKNOWN,
)
from export_assets.lib.source.timestamps import day_text
from export_assets.lib.source.validations import ERROR_TYPES, IdRanges, id_range_between, timed_read

WINDOW_DAYS = 7
TOP_PROXIES = 10
TOP_ERRORS = 10
TOP_SOURCES = 15
TOP_COUNTRIES = 10
TOP_PROTOCOLS = 6
MESSAGE_LENGTH = 120
OTHER = "(other)"
OTHER_ERRORS = "other"
ERROR_KINDS = (*ERROR_TYPES, OTHER_ERRORS)
"""Failure kinds in the report: ProxyWhirl's error types, then any other."""

# Latency histogram bins in ms, logarithmic: 1, 2, 5, 10, ... 50,000, then "more".
LATENCY_EDGES = tuple(float(m * 10**e) for e in range(0, 5) for m in (1, 2, 5))
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@dataclass(frozen=True)
class PeriodFigures:
    """The summary of one 7-day period: the pool at its end and the checks during it."""

    start: date
    end: date
    pool: int
    statuses: dict[str, int]
    new: int
    removed: int
    checks: int
    successes: int
    latency_samples: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.checks if self.checks else None

    def share(self, status: str) -> float | None:
        """Share of the pool in ``status`` at the end of the period."""
        return self.statuses[status] / self.pool if self.pool else None


@dataclass(frozen=True)
class DayFigures:
    """One UTC day: its checks, and the pool at its end."""

    day: date
    checks: int
    successes: int
    latency_samples: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    pool: int
    healthy: int
    errors: dict[str, int]

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.checks if self.checks else None

    @property
    def healthy_share(self) -> float | None:
        return self.healthy / self.pool if self.pool else None


@dataclass(frozen=True)
class ProxyFigures:
    """One proxy of the pool at the end of D, with its checks during the week."""

    url: str
    protocol: str
    country: str
    source: str
    health_status: str
    checks: int
    successes: int
    latency_avg_ms: float | None

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.checks if self.checks else None


@dataclass(frozen=True)
class ErrorMessage:
    """A failure message (credentials masked, control characters removed, truncated)."""

    error_type: str
    message: str
    count: int


@dataclass(frozen=True)
class SourceFigures:
    """One proxy source: its proxies at the end of D and their checks during the week."""

    source: str
    proxies: int
    healthy: int
    checks: int
    successes: int

    @property
    def healthy_share(self) -> float:
        return self.healthy / self.proxies if self.proxies else 0.0

    @property
    def healthy_share_low(self) -> float:
        """The ranking score: the lower bound of the 95% Wilson interval of the healthy share."""
        return wilson_lower_bound(self.healthy, self.proxies)

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.checks if self.checks else None


SOURCE_RANKING_RULE = (
    "Ranked by the lower bound of the 95% Wilson score interval of each source's healthy "
    "share at the end of the week (then by success rate), so that a source of a few proxies "
    "cannot top the list by chance: one healthy proxy out of one scores {one}, 40 out of 50 "
    "score {forty}."
)
"""How the report ranks sources (formatted by :func:`source_ranking_rule`)."""

_Z95 = 1.959963984540054  # the standard normal quantile of 97.5%


def wilson_lower_bound(successes: int, trials: int) -> float:
    """The lower bound of the 95% Wilson score interval of ``successes / trials`` (0 when
    there is no trial): what the share is at least, with 95% confidence, given the sample."""
    if trials <= 0:
        return 0.0
    share = successes / trials
    z2 = _Z95 * _Z95
    centre = share + z2 / (2 * trials)
    margin = _Z95 * math.sqrt(share * (1 - share) / trials + z2 / (4 * trials * trials))
    return max(0.0, (centre - margin) / (1 + z2 / trials))


def source_ranking_rule() -> str:
    """The ranking rule in words, with two worked scores."""
    return SOURCE_RANKING_RULE.format(
        one=f"{wilson_lower_bound(1, 1) * 100:.1f}%",
        forty=f"{wilson_lower_bound(40, 50) * 100:.1f}%",
    )


@dataclass(frozen=True)
class WeekFigures:
    """Everything a weekly report shows, for the 7 days ending on ``end``."""

    end: date
    current: PeriodFigures
    previous: PeriodFigures
    days: list[DayFigures]
    latency_histogram: list[tuple[float, float | None, int]]  # [low, high) ms, count
    protocols: list[tuple[str, int]]
    countries: list[tuple[str, int]]
    top: list[ProxyFigures]
    bottom: list[ProxyFigures]
    min_checks: int
    errors: list[ErrorMessage]
    sources: list[SourceFigures]
    sources_total: int
    proxies: list[ProxyFigures] = field(repr=False)
    validation_results_max_id: int | None = None

    @property
    def start(self) -> date:
        return self.current.start

    @property
    def empty(self) -> bool:
        """No proxy and no check in the week: nothing to chart."""
        return self.current.pool == 0 and self.current.checks == 0


def clean_text(value: str, length: int = MESSAGE_LENGTH) -> str:
    """Free text for a report: credentials masked, control characters as one space,
    truncated to ``length`` characters with an ellipsis."""
    text = _CONTROL.sub(" ", mask_url_credentials(value)).strip()
    return text if len(text) <= length else text[: length - 1] + "…"


def percentile(values_at: Any, samples: int, percent: int) -> float | None:
    """The ``percent``-th percentile of ``samples`` sorted values by linear interpolation;
    ``values_at(rank, count)`` returns ``count`` values from ``rank``."""
    if samples == 0:
        return None
    low, part = divmod((samples - 1) * percent, 100)
    values = values_at(low, 2 if part else 1)
    if not part:
        return float(values[0])
    return float(values[0]) + part * (float(values[1]) - float(values[0])) / 100


def week_figures(snapshot: SourceSnapshot, end: date, *, min_checks: int) -> WeekFigures:
    """The figures of the 7 days ending on ``end`` (and of the 7 before), from one snapshot."""
    first = end - timedelta(days=WINDOW_DAYS - 1)
    previous_first = first - timedelta(days=WINDOW_DAYS)
    # Midnights closing each day from previous_first - 1 to end: boundary k closes the day
    # previous_first - 1 + k. Index WINDOW_DAYS closes the previous period, the last one D.
    closes = [previous_first + timedelta(days=k) for k in range(2 * WINDOW_DAYS + 1)]
    pool = _Pool.rebuild(snapshot, closes)
    ids = id_range_between(snapshot, *_bounds(previous_first, end))
    checks = _day_checks(snapshot, ids, previous_first, end)
    removed = _removed_per_day(snapshot, previous_first, end)
    latencies = _Latencies.read(snapshot, ids, previous_first, first, end)

    def period(start: date, stop: date) -> PeriodFigures:
        index = closes.index(stop + timedelta(days=1))
        samples = latencies.samples(start, stop)
        in_period = [checks.get(start + timedelta(days=n)) for n in range(WINDOW_DAYS)]
        return PeriodFigures(
            start=start,
            end=stop,
            pool=pool.size(index),
            statuses=pool.statuses(index),
            new=pool.discovered_between(start, stop),
            removed=sum(removed[start + timedelta(days=n)] for n in range(WINDOW_DAYS)),
            checks=sum(c.checks for c in in_period if c),
            successes=sum(c.successes for c in in_period if c),
            latency_samples=samples,
            latency_p50_ms=latencies.percentile(start, stop, 50),
            latency_p95_ms=latencies.percentile(start, stop, 95),
        )

    days = []
    for n in range(WINDOW_DAYS):
        day = first + timedelta(days=n)
        index = closes.index(day + timedelta(days=1))
        counts = checks.get(day) or _DayChecks()
        samples = latencies.samples(day, day)
        days.append(
            DayFigures(
                day=day,
                checks=counts.checks,
                successes=counts.successes,
                latency_samples=samples,
                latency_p50_ms=latencies.percentile(day, day, 50),
                latency_p95_ms=latencies.percentile(day, day, 95),
                pool=pool.size(index),
                healthy=pool.statuses(index)[HEALTHY],
                errors={kind: counts.errors[kind] for kind in ERROR_KINDS},
            )
        )

    week = _proxy_week(snapshot, ids, first, end, latencies.week_sums)
    last = len(closes) - 1
    proxies = [
        ProxyFigures(
            url=identity.url,
            protocol=identity.protocol,
            country=identity.country,
            source=identity.source,
            health_status=pool.status_of(identity, last),
            checks=week.get(identity.raw_url, (0, 0, None))[0],
            successes=week.get(identity.raw_url, (0, 0, None))[1],
            latency_avg_ms=week.get(identity.raw_url, (0, 0, None))[2],
        )
        for identity in pool.identities
        if identity.discovered_at < closes[last].isoformat()
    ]
    ranked = [p for p in proxies if p.checks >= min_checks and p.checks]
    top = sorted(ranked, key=lambda p: (-(p.success_rate or 0.0), -p.checks, p.url))
    bottom = sorted(ranked, key=lambda p: (p.success_rate or 0.0, -p.checks, p.url))
    sources = _sources(proxies)
    return WeekFigures(
        end=end,
        current=period(first, end),
        previous=period(previous_first, first - timedelta(days=1)),
        days=days,
        latency_histogram=_latency_histogram(snapshot, ids, first, end),
        protocols=_top(Counter(p.protocol for p in proxies), TOP_PROTOCOLS),
        countries=_top(Counter(p.country for p in proxies), TOP_COUNTRIES),
        top=top[:TOP_PROXIES],
        bottom=bottom[:TOP_PROXIES],
        min_checks=min_checks,
        errors=_error_messages(snapshot, ids, first, end),
        sources=sources[:TOP_SOURCES],
        sources_total=len(sources),
        proxies=proxies,
        validation_results_max_id=snapshot.validation_watermark(end + timedelta(days=1)),
    )


# --- the pool at each midnight ---------------------------------------------------------


@dataclass(frozen=True)
class _Identity:
    raw_url: str
    url: str
    protocol: str
    country: str
    source: str
    discovered_at: str


_STATUS_CODES = {status: code for code, status in enumerate(HEALTH_STATUSES)}
_HEALTHY_CODE, _UNHEALTHY_CODE, _DEAD_CODE, _UNKNOWN_CODE = (
    _STATUS_CODES[s] for s in (HEALTHY, UNHEALTHY, DEAD, UNKNOWN)
)


class _Pool:
    """Every proxy discovered before the last midnight, with its status at each midnight."""

    def __init__(self, closes: list[date], identities: list[_Identity], codes: dict[str, bytes]):
        self.closes = [day_text(day) for day in closes]
        self.identities = identities
        self._codes = codes
        # Counted with numpy: one row of status codes per proxy, one column per midnight;
        # a proxy counts from the first midnight after its discovery.
        unknown = bytes([_STATUS_CODES[UNKNOWN]]) * len(closes)
        matrix = np.frombuffer(
            b"".join(codes.get(identity.raw_url, unknown) for identity in identities), np.uint8
        ).reshape(len(identities), len(closes))
        first = np.array(
            [bisect.bisect_right(self.closes, i.discovered_at) for i in identities], np.int64
        ).reshape(-1, 1)
        present = np.arange(len(closes)).reshape(1, -1) >= first
        self._statuses = [
            {
                status: int(np.count_nonzero(present[:, index] & (matrix[:, index] == code)))
                for status, code in _STATUS_CODES.items()
            }
            for index in range(len(closes))
        ]
        self._sizes = [int(np.count_nonzero(present[:, index])) for index in range(len(closes))]

    @classmethod
    def rebuild(cls, snapshot: SourceSnapshot, closes: list[date]) -> _Pool:
        last = day_text(closes[-1])
        identities = [
            _Identity(
                raw_url=url,
                url=mask_url_credentials(url) if "@" in url else url,
                protocol=protocol,
                country=NO_COUNTRY if country is None else country,
                source=source,
                discovered_at=discovered_at,
            )
            for url, protocol, country, source, discovered_at in _identities_before(snapshot, last)
        ]
        bounds = [day_text(day) for day in closes]
        codes: dict[str, bytes] = {}
        for url, checks in snapshot.histories(last):
            # ``is_valid <> 0`` as SQLite has it: any text or blob counts as valid.
            codes[url] = _statuses_at(((at, valid != 0) for at, valid, _ in checks), bounds)
        return cls(closes, identities, codes)

    def status_of(self, identity: _Identity, index: int) -> str:
        codes = self._codes.get(identity.raw_url)
        return UNKNOWN if codes is None else HEALTH_STATUSES[codes[index]]

    def size(self, index: int) -> int:
        return self._sizes[index]

    def statuses(self, index: int) -> dict[str, int]:
        return dict(self._statuses[index])

    def discovered_between(self, first: date, last: date) -> int:
        low, high = day_text(first), day_text(last + timedelta(days=1))
        return sum(1 for identity in self.identities if low <= identity.discovered_at < high)


def _statuses_at(checks: Any, bounds: list[str]) -> bytes:
    """A proxy's status code at each bound, replaying its checks with ProxyWhirl's rules."""
    status, failures, out, k, n = _UNKNOWN_CODE, 0, bytearray(), 0, len(bounds)
    for validated_at, valid in checks:
        while k < n and validated_at >= bounds[k]:
            out.append(status)
            k += 1
        if valid:
            status, failures = _HEALTHY_CODE, 0
        else:
            failures += 1
            status = _DEAD_CODE if failures >= DEAD_AFTER_FAILURES else _UNHEALTHY_CODE
    out.extend(bytes([status]) * (n - k))
    return bytes(out)


# --- checks ------------------------------------------------------------------------------


@dataclass
class _DayChecks:
    checks: int = 0
    successes: int = 0
    errors: Counter[str] = field(default_factory=Counter)


def _identities_before(snapshot: SourceSnapshot, before: str) -> list[tuple[Any, ...]]:
    """url, protocol, country_code, source and discovered_at of the proxies discovered
    before ``before``, in url order, as the snapshot read them."""
    table = snapshot.identities
    kept = table.filter(pc.less(table.column("discovered_at"), before))
    names = ("url", "protocol", "country_code", "source", "discovered_at")
    return list(zip(*(kept.column(name).to_pylist() for name in names), strict=True))


def _chunked(
    snapshot: SourceSnapshot, ids: tuple[int, int] | None, sql: str, parameters: Sequence[Any]
) -> Iterator[tuple[Any, ...]]:
    """The rows of ``sql`` (``id >= ? AND id <= ?`` first) over ``ids``, a short read per
    id range; each range's rows are all fetched before they are handed on."""
    if ids is None:
        return
    ranges = IdRanges(snapshot, ids)
    for chunk in ranges:
        yield from timed_read(ranges, snapshot, snapshot.execute, sql, [*chunk, *parameters])


_IN_WINDOW = "id >= ? AND id <= ? AND validated_at >= ? AND validated_at < ?"


def _day_checks(
    snapshot: SourceSnapshot, ids: tuple[int, int] | None, first: date, last: date
) -> dict[date, _DayChecks]:
    days: dict[date, _DayChecks] = {}
    rows = _chunked(
        snapshot,
        ids,
        "SELECT substr(validated_at, 1, 10), error_type, count(*), sum(is_valid <> 0)"
        f" FROM validation_results WHERE {_IN_WINDOW} GROUP BY 1, 2",
        _bounds(first, last),
    )
    for day, error_type, count, successes in rows:
        counts = days.setdefault(date.fromisoformat(day), _DayChecks())
        counts.checks += count
        counts.successes += successes
        if error_type is not None:
            counts.errors[error_type if error_type in ERROR_TYPES else OTHER_ERRORS] += count
    return days


def _bounds(first: date, last: date) -> tuple[str, str]:
    return day_text(first), day_text(last + timedelta(days=1))


# Successful checks' latencies in (validated_at, id) order, from a key on: the order in
# which SQLite's avg() met them, so per-proxy averages add up exactly as before.
_LATENCIES = (
    "SELECT validated_at, id, proxy_url, CASE substr(validated_at, 1, 10) {days} END,"
    " response_time_ms FROM validation_results"
    " WHERE (validated_at, id) > (?, ?) AND validated_at < ? AND +id <= ?"
    " AND is_valid <> 0 AND response_time_ms IS NOT NULL ORDER BY validated_at, id LIMIT ?"
)
_LATENCY_SCHEMA = pa.schema(
    [
        pa.field("validated_at", pa.string()),
        pa.field("id", pa.int64()),
        pa.field("proxy_url", pa.string()),
        pa.field("day", pa.int64()),
        pa.field("response_time_ms", pa.float64()),
    ]
)


@dataclass
class _Latencies:
    """The successful checks' latencies of the two periods: counts and exact percentiles
    per day and per period, and per-proxy sums over the current period."""

    first_day: date
    counts: npt.NDArray[np.int64]
    picked: npt.NDArray[np.float64]
    week_sums: dict[str, float]

    @classmethod
    def read(
        cls,
        snapshot: SourceSnapshot,
        ids: tuple[int, int] | None,
        first_day: date,
        current: date,
        end: date,
    ) -> _Latencies:
        """Two passes (``RankPicker``) over the latencies of ``first_day`` .. ``end``; the
        groups are the days, then the period before ``current``, then the one from it."""
        days = (end - first_day).days + 1
        split = (current - first_day).days
        groups = days + 2
        period = np.array([days + (d >= split) for d in range(days)], np.int64)
        picker = RankPicker(groups)
        urls: list[str] = []
        url_index: dict[str, int] = {}
        sums: list[float] = []
        current_text = day_text(current)
        for rows in _latency_chunks(snapshot, ids, first_day, days):
            day = rows.column("day").to_numpy()
            values = rows.column("response_time_ms").to_numpy()
            picker.count(np.stack([day, period[day]]), values)
            # Sums per proxy over the current period, one addition at a time in order.
            recent = rows.filter(pc.greater_equal(rows.column("validated_at"), current_text))
            for url in pc.unique(recent.column("proxy_url")).to_pylist():
                if url not in url_index:
                    url_index[url] = len(urls)
                    urls.append(url)
                    sums.append(0.0)
            if recent.num_rows:
                which = pc.index_in(
                    recent.column("proxy_url"), value_set=pa.array(urls, pa.string())
                )
                totals = np.array(sums)
                np.add.at(totals, which.to_numpy(), recent.column("response_time_ms").to_numpy())
                sums = totals.tolist()
        counts = picker.totals()
        targets = np.array(
            [percentile_ranks(int(n)) if n else [-1] * 2 * len(PERCENTILES) for n in counts],
            np.int64,
        ).reshape(groups, 2 * len(PERCENTILES))
        picker.want(targets)
        for rows in _latency_chunks(snapshot, ids, first_day, days):
            day = rows.column("day").to_numpy()
            picker.collect(np.stack([day, period[day]]), rows.column("response_time_ms").to_numpy())
        return cls(first_day, counts, picker.picked(), dict(zip(urls, sums, strict=True)))

    def _group(self, first: date, last: date) -> int:
        if first == last:
            return (first - self.first_day).days
        days = len(self.counts) - 2
        return days + (first != self.first_day)

    def samples(self, first: date, last: date) -> int:
        """Latencies of the day ``first`` (= ``last``) or of the period ``first`` .. ``last``."""
        return int(self.counts[self._group(first, last)])

    def percentile(self, first: date, last: date, percent: int) -> float | None:
        """As :func:`percentile` over the same latencies."""
        group = self._group(first, last)
        column = 2 * PERCENTILES.index(percent)
        values = self.picked[group, column : column + 2]
        return percentile(lambda rank, count: values[:count], int(self.counts[group]), percent)


def _latency_chunks(
    snapshot: SourceSnapshot, ids: tuple[int, int] | None, first_day: date, days: int
) -> Iterator[pa.Table]:
    """The latencies of ``days`` days from ``first_day``, in (validated_at, id) order, by
    short reads; ``day`` is the day's index."""
    if ids is None:
        return
    names = [day_text(first_day + timedelta(days=n)) for n in range(days)]
    sql = _LATENCIES.format(days=" ".join(f"WHEN ? THEN {n}" for n in range(days)))
    high = day_text(first_day + timedelta(days=days))
    key: tuple[Any, int] = (day_text(first_day), -(2**63))
    sizer = ChunkSizer(snapshot.chunk_rows, grow=4)
    while True:
        limit = sizer.rows
        rows = snapshot.execute(sql, [*names, *key, high, snapshot.id_limit, limit])
        sizer.took(snapshot.last_held, len(rows))
        if rows:
            key = (rows[-1][0], rows[-1][1])
            yield pa.Table.from_batches(
                [rows_to_batch(rows, _LATENCY_SCHEMA, table="validation_results")]
            )
        if len(rows) < limit:
            return


def _latency_histogram(
    snapshot: SourceSnapshot, ids: tuple[int, int] | None, first: date, last: date
) -> list[tuple[float, float | None, int]]:
    edges = (0.0, *LATENCY_EDGES)
    sums = ", ".join(
        f"sum(response_time_ms >= {low!r} AND response_time_ms < {high!r})"
        for low, high in itertools.pairwise(edges)
    )
    totals = [0] * len(edges)
    for row in _chunked(
        snapshot,
        ids,
        f"SELECT {sums}, sum(response_time_ms >= {edges[-1]!r}) FROM validation_results"
        f" WHERE {_IN_WINDOW} AND is_valid <> 0 AND response_time_ms IS NOT NULL",
        _bounds(first, last),
    ):
        totals = [total + int(count or 0) for total, count in zip(totals, row, strict=True)]
    highs: list[float | None] = [*edges[1:], None]
    return [(low, high, count) for low, high, count in zip(edges, highs, totals, strict=True)]


def _removed_per_day(snapshot: SourceSnapshot, first: date, last: date) -> Counter[date]:
    """Proxies removed from ProxyWhirl (history but no identity), counted on the day after
    their last check, the first day nobody saw them (as ``proxy_changes`` reports them)."""
    removed: Counter[date] = Counter()
    for _, last_check in orphans(snapshot):
        gone = date.fromisoformat(str(last_check)[:10]) + timedelta(days=1)
        if first <= gone <= last:
            removed[gone] += 1
    return removed


def _proxy_week(
    snapshot: SourceSnapshot,
    ids: tuple[int, int] | None,
    first: date,
    last: date,
    sums: dict[str, float],
) -> dict[str, tuple[int, int, float | None]]:
    """Per proxy checked in the period: checks, successes and the mean latency of its
    successful checks (``sums`` / their number, as SQLite's avg())."""
    totals: dict[str, list[int]] = {}
    for url, n, ok, timed in _chunked(
        snapshot,
        ids,
        "SELECT proxy_url, count(*), sum(is_valid <> 0),"
        " count(CASE WHEN is_valid <> 0 THEN response_time_ms END)"
        f" FROM validation_results WHERE {_IN_WINDOW} GROUP BY proxy_url",
        _bounds(first, last),
    ):
        entry = totals.setdefault(url, [0, 0, 0])
        entry[0] += int(n)
        entry[1] += int(ok)
        entry[2] += int(timed)
    return {
        url: (n, ok, sums[url] / timed if timed else None) for url, (n, ok, timed) in totals.items()
    }


def _error_messages(
    snapshot: SourceSnapshot, ids: tuple[int, int] | None, first: date, last: date
) -> list[ErrorMessage]:
    counts: Counter[tuple[Any, Any]] = Counter()
    for kind, message, count in _chunked(
        snapshot,
        ids,
        "SELECT coalesce(error_type, ''), error_message, count(*) FROM validation_results"
        f" WHERE {_IN_WINDOW} AND error_message IS NOT NULL GROUP BY 1, 2",
        _bounds(first, last),
    ):
        counts[(kind, message)] += int(count)
    # SQLite's ORDER BY 3 DESC, 2, 1: numbers before text before blobs.
    ranked = sorted(
        counts.items(),
        key=lambda item: (-item[1], _sqlite_order(item[0][1]), _sqlite_order(item[0][0])),
    )
    return [
        ErrorMessage(clean_text(str(kind), 40) or "(none)", clean_text(str(message)), count)
        for (kind, message), count in ranked[:TOP_ERRORS]
    ]


def _sqlite_order(value: Any) -> tuple[int, Any]:
    if isinstance(value, int | float):
        return 0, value
    if isinstance(value, str):
        return 1, value
    return 2, bytes(value)


def _sources(proxies: list[ProxyFigures]) -> list[SourceFigures]:
    totals: dict[str, list[int]] = {}
    for proxy in proxies:
        entry = totals.setdefault(proxy.source, [0, 0, 0, 0])
        entry[0] += 1
        entry[1] += proxy.health_status == HEALTHY
        entry[2] += proxy.checks
        entry[3] += proxy.successes
    figures = [SourceFigures(source, *values) for source, values in totals.items()]
    # See SOURCE_RANKING_RULE: by the healthy share's lower confidence bound, not the share.
    return sorted(
        figures,
        key=lambda s: (-s.healthy_share_low, -(s.success_rate or 0.0), -s.proxies, s.source),
    )


def _top(counts: Counter[str], keep: int) -> list[tuple[str, int]]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    if len(ranked) <= keep:
        return ranked
    return [*ranked[: keep - 1], (OTHER, sum(count for _, count in ranked[keep - 1 :]))]


__all__ = [
    "DEAD",
    "ERROR_KINDS",
    "HEALTHY",
    "UNHEALTHY",
    "UNKNOWN",
    "DayFigures",
    "ErrorMessage",
    "PeriodFigures",
    "ProxyFigures",
    "SourceFigures",
    "WeekFigures",
    "clean_text",
    "source_ranking_rule",
    "week_figures",
    "wilson_lower_bound",
]
