"""ProxyWhirl's health rules, applied one validation at a time, and which checks it counts.

ProxyWhirl 0.3.3 (``SQLiteStorage``) keeps a proxy's state in ``proxy_statuses``:

- ``add_proxy`` / ``add_proxies_batch`` write the identity and a fresh status row (health
  ``unknown``, zero counts) in one commit; ``discovered_at`` is the moment of the add.
  ``add_proxies_batch(validated=True)`` writes a *seed* status instead: healthy, one check,
  one success, ``last_check_at = last_success_at`` = the batch's start (at or just before
  ``discovered_at``), ``avg_response_time_ms`` = the proxy's ``average_response_time_ms``;
  no ``validation_results`` row records it.
- ``record_validation`` (and ``record_validations_batch``) always inserts the history row,
  but updates the status only if the status row exists, in commit (= id) order. A check of
  a url recorded before the url was added, or after it was deleted, is in the history and
  in no count.
- ``delete`` removes the identity and the status; a re-add starts a fresh status row.

So the checks ProxyWhirl counted in a proxy's current status are its history rows recorded
at or after its ``discovered_at`` (:func:`counts`), in id order, after its seed check if it
was added as validated (:func:`seed_check`); :func:`replay` applies them with
:class:`ProxyHealth`, which is ``record_validation``'s update.

What the database keeps no trace of cannot be rebuilt: a deleted proxy's incarnation (its
identity and ``discovered_at`` are gone; a re-added proxy is a new one); a seed's exact
time once later checks and successes have replaced it in the status (``discovered_at``
stands in, microseconds late); history that ``cleanup()`` deleted (it keeps one day);
and which rows came from ``record_validations_batch``, whose SQL sets the average to NULL
on a success without a latency where ``record_validation`` keeps it (the replay keeps it).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
DEAD = "dead"
UNKNOWN = "unknown"
HEALTH_STATUSES = (HEALTHY, UNHEALTHY, DEAD, UNKNOWN)

DEAD_AFTER_FAILURES = 3  # the third consecutive failure marks a proxy dead
EMA_WEIGHT = 0.2  # new average = 0.2 * sample + 0.8 * old average


@dataclass
class ProxyHealth:
    """A proxy's health as ProxyWhirl tracks it; ``record`` applies one check.

    Timestamps are kept as they were given (ProxyWhirl's text or datetimes alike).
    """

    health_status: str = UNKNOWN
    last_success_at: str | None = None
    last_failure_at: str | None = None
    last_check_at: str | None = None
    consecutive_successes: int = 0
    consecutive_failures: int = 0
    total_checks: int = 0
    total_successes: int = 0
    avg_response_time_ms: float | None = None

    def record(self, validated_at: str, is_valid: bool, response_time_ms: float | None) -> None:
        """Apply one validation result, exactly as ProxyWhirl does after a check."""
        self.total_checks += 1
        self.last_check_at = validated_at
        if is_valid:
            self.health_status = HEALTHY
            self.consecutive_successes += 1
            self.consecutive_failures = 0
            self.total_successes += 1
            self.last_success_at = validated_at
            if response_time_ms is not None:
                if self.avg_response_time_ms is None:
                    self.avg_response_time_ms = response_time_ms
                else:
                    self.avg_response_time_ms = (
                        EMA_WEIGHT * response_time_ms + (1 - EMA_WEIGHT) * self.avg_response_time_ms
                    )
        else:
            self.consecutive_failures += 1
            self.consecutive_successes = 0
            self.last_failure_at = validated_at
            self.health_status = (
                DEAD if self.consecutive_failures >= DEAD_AFTER_FAILURES else UNHEALTHY
            )

    @property
    def success_rate(self) -> float | None:
        """Share of successful checks, or None before the first check."""
        return self.total_successes / self.total_checks if self.total_checks else None


def replay(
    checks: Iterable[tuple[str, object, float | None]], window_start: str
) -> tuple[Any, ...]:
    """Replay one proxy's counted checks ``(validated_at, is_valid, response_time_ms)`` in
    the order ProxyWhirl applied them (its seed check first, if any).

    Returns the health columns of the pool, in its order: health_status, last_check_at,
    last_success_at, last_failure_at, consecutive_successes, consecutive_failures,
    total_checks, total_successes, success_rate, checks_7d, observed_success_rate_7d,
    success_rate_7d and avg_response_time_ms. The 7-day figures count checks at or after
    ``window_start`` (DATETIME text, compared as text). ``success_rate_7d`` is ProxyWhirl's
    column, which 0.3.3 never writes: NULL, as in its status table.
    """
    health = ProxyHealth()
    checks_7d = successes_7d = 0
    for validated_at, is_valid, response_time_ms in checks:
        health.record(validated_at, bool(is_valid), response_time_ms)
        if validated_at >= window_start:
            checks_7d += 1
            successes_7d += bool(is_valid)
    return (
        health.health_status,
        health.last_check_at,
        health.last_success_at,
        health.last_failure_at,
        health.consecutive_successes,
        health.consecutive_failures,
        health.total_checks,
        health.total_successes,
        health.success_rate,
        checks_7d,
        successes_7d / checks_7d if checks_7d else None,
        None,
        health.avg_response_time_ms,
    )


def moment(text: str) -> str:
    """ProxyWhirl's DATETIME text in a form that compares in time order with another
    (a ``T`` separator read as the space ProxyWhirl writes; SQL: ``replace(x, 'T', ' ')``)."""
    return text.replace("T", " ")


def counts(validated_at: str, discovered_at: str) -> bool:
    """Whether ProxyWhirl counted a check of a proxy discovered at ``discovered_at``: its
    status row exists from the add on. A check at the very moment of the add counts (the
    add and a check can share a timestamp only on a frozen or coarse clock, where a check
    made right after the add is the likely order)."""
    return moment(validated_at) >= moment(discovered_at)


def counted_checks(checks: list[Any], discovered_at: str) -> list[Any]:
    """The checks (``validated_at`` first) that :func:`counts` keeps, in their order."""
    since = moment(discovered_at)
    if any("T" in check[0] for check in checks):
        return [check for check in checks if moment(check[0]) >= since]
    return [check for check in checks if check[0] >= since]  # ProxyWhirl's own form


@dataclass(frozen=True)
class StatusCounts:
    """What ``proxy_statuses`` holds for a proxy when the snapshot opened, as far as seed
    checks need it."""

    total_checks: int
    total_successes: int
    last_check_at: str | None
    last_success_at: str | None
    avg_response_time_ms: float | None


def seed_check(
    status: StatusCounts | None,
    discovered_at: str,
    checks: int,
    successes: int,
    latencies: Sequence[float],
) -> tuple[str, int, float | None] | None:
    """The seed check of a proxy added as already validated, as a check to replay first,
    or None if it was not.

    ``checks``, ``successes`` and ``latencies`` are those of every check ProxyWhirl counted
    for it up to the snapshot (the successful checks' latencies in id order). A proxy was
    seeded when its status counts exactly one more check and one more success than that.
    The seed's time is the status's ``last_check_at`` while no check came after it, or its
    ``last_success_at`` while no success did (either is then at or before
    ``discovered_at``), else ``discovered_at``: ProxyWhirl keeps no other trace of it, and
    takes it when the batch starts, so this is late by the time the batch took to write
    (microseconds; nothing on a frozen clock). Its latency is recovered from the status's
    average (:func:`seed_latency`).
    """
    if status is None:
        return None
    if status.total_checks != checks + 1 or status.total_successes != successes + 1:
        return None
    at = discovered_at
    for kept in (status.last_check_at, status.last_success_at):
        if kept is not None and moment(kept) <= moment(discovered_at):
            at = kept
            break
    return at, 1, seed_latency(status.avg_response_time_ms, latencies)


def seed_latency(average: float | None, latencies: Sequence[float]) -> float | None:
    """The seed's latency: the first value of an EMA that ``latencies`` then turned into
    ``average``.

    With no latency after the seed, the average is the seed's latency. If the EMA started
    at the first latency gives the average, the seed had none (the usual ambiguity of a
    seed latency equal to the first one is read that way). Otherwise every
    first value in an interval of floats gives ``average`` exactly (the EMA shrinks
    differences, and the replay is monotonic in it): the interval is found by bisection
    around the inverted EMA, and its shortest decimal is taken, as measured latencies are
    short decimals. The last day is exact either way; an earlier day's average is exact
    when the seed's latency was that shortest decimal, else off in its last bits.
    """
    if average is None or not latencies:
        return average
    if _ema(latencies[0], latencies[1:]) == average:
        return None  # a seed without latency: the first check's latency started the EMA
    guess = average
    for latency in reversed(latencies):
        guess = (guess - EMA_WEIGHT * latency) / (1 - EMA_WEIGHT)
    if not math.isfinite(guess):
        return guess
    center = _ordinal(guess)

    def gives(ordinal: int) -> float:
        return _ema(_from_ordinal(ordinal), latencies)

    low_end = _bracket(center, -1, lambda ordinal: gives(ordinal) < average)
    high_end = _bracket(center, 1, lambda ordinal: gives(ordinal) > average)
    if low_end is None or high_end is None:
        return guess
    low = _first(low_end, high_end, lambda ordinal: gives(ordinal) >= average)
    high = _first(low_end, high_end, lambda ordinal: gives(ordinal) > average) - 1
    if low > high:  # no first value gives it exactly (not ProxyWhirl's arithmetic)
        return guess
    lowest, highest = _from_ordinal(low), _from_ordinal(high)
    middle = lowest / 2 + highest / 2
    for digits in range(18):
        # The nearest decimal of these digits to the middle is in the interval if any is.
        candidate = round(middle, digits)
        if lowest <= candidate <= highest:
            return candidate
    return middle


def _ordinal(value: float) -> int:
    """Floats as integers in the same order (neighbouring floats differ by one)."""
    bits: int = struct.unpack("<q", struct.pack("<d", value))[0]
    return bits if bits >= 0 else -(bits & 0x7FFF_FFFF_FFFF_FFFF)


def _from_ordinal(ordinal: int) -> float:
    bits = ordinal if ordinal >= 0 else -ordinal | -0x8000_0000_0000_0000
    value: float = struct.unpack("<d", struct.pack("<q", bits))[0]
    return value


def _bracket(center: int, direction: int, beyond: Callable[[int], bool]) -> int | None:
    """An ordinal on ``direction``'s side of ``center`` where ``beyond`` holds."""
    step = 1
    while step < 1 << 60:
        ordinal = center + direction * step
        value = _from_ordinal(ordinal)
        if not math.isfinite(value):
            return None
        if beyond(ordinal):
            return ordinal
        step *= 2
    return None


def _first(low: int, high: int, holds: Callable[[int], bool]) -> int:
    """The first ordinal in ``(low, high]`` where ``holds`` (monotonic) is true."""
    while high - low > 1:
        middle = (low + high) // 2
        if holds(middle):
            high = middle
        else:
            low = middle
    return high


def _ema(first: float, latencies: Sequence[float]) -> float:
    average = first
    for latency in latencies:
        average = EMA_WEIGHT * latency + (1 - EMA_WEIGHT) * average
    return average
