"""The validation history: batches of checks over a growing pool, and the statuses they leave.

Checks come in batches that share one ``validated_at`` (ProxyWhirl's
``record_validations_batch`` stamps a whole batch with one time). Each day has a batch at
exactly 00:00:00.000000 and one at 23:59:59.999999, so partition boundaries are exercised.
A batch takes the next proxies of the pool round-robin, as ProxyWhirl's health checker does;
a proxy joins the rotation once it has been discovered.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import date, timedelta

from export_assets.lib.sample.hostile import HOSTILE_STRINGS
from export_assets.lib.sample.pool import (
    LATENCY_SIGMA,
    SampleProxy,
    day_start,
    to_microseconds,
)
from export_assets.lib.source.schema import DATETIME_TEXT_FORMAT
from export_assets.lib.source.status import ProxyHealth

ERROR_TYPES = (
    "timeout",
    "connection_refused",
    "ssl_error",
    "proxy_error",
    "http_error",
    "dns_error",
)
_ERROR_WEIGHTS = (35, 20, 10, 15, 12, 8)
MAX_BATCH = 500  # ProxyWhirl validates a few hundred proxies per batch
_DAY_US = 86_400_000_000

# id, proxy_url, validated_at, is_valid, response_time_ms, error_type, error_message
ValidationRow = tuple[int, str, str, int, float | None, str | None, str | None]
# proxy_url, health_status, last_success_at, last_failure_at, last_check_at,
# consecutive_successes, consecutive_failures, total_checks, total_successes,
# avg_response_time_ms, success_rate_7d, updated_at
StatusRow = tuple[
    str,
    str,
    str | None,
    str | None,
    str | None,
    int,
    int,
    int,
    int,
    float | None,
    float | None,
    str,
]


class ValidationHistory:
    """The checks of a sample pool; iterate :meth:`rows` once, then read :meth:`status_rows`.

    Statuses are what ProxyWhirl 0.3.3 writes: a row per proxy from its add on (``unknown``,
    zero counts), updated by its rules (:class:`ProxyHealth`) for each check recorded after
    the add, the seed check of proxies added as already validated included (it has no row
    in the history). A check recorded before the add (``checked_before_add_from``) is in
    the history only: ProxyWhirl updates no status for a url it does not hold yet.
    ``success_rate_7d`` stays NULL (0.3.3 never sets it); ``updated_at`` is the last
    counted check's time, or the add's.
    """

    def __init__(
        self,
        rng: random.Random,
        pool: tuple[SampleProxy, ...],
        first_day: date,
        days: int,
        validations_per_day: int,
    ) -> None:
        self._rng = rng
        self._pool = pool
        self._days = [first_day + timedelta(days=n) for n in range(days)]
        self._per_day = validations_per_day
        self._health = [ProxyHealth() for _ in pool]
        self._menus = [_failure_menu(rng, proxy) for proxy in pool]
        self.count = 0
        for proxy in pool:
            if proxy.seed_latency_ms is not None:
                self._health[proxy.index].record(proxy.seed_checked_at, True, proxy.seed_latency_ms)

    def rows(self) -> Iterator[ValidationRow]:
        """Yield ``validation_results`` rows in time order, ids from 1, updating statuses."""
        rng = self._rng
        draw, gauss, choice, exp = rng.random, rng.gauss, rng.choice, math.exp
        members = sorted(
            (proxy for proxy in self._pool if proxy.checked), key=lambda p: p.checked_from
        )
        member_index = [proxy.index for proxy in members]
        discovered = [to_microseconds(proxy.checked_from) for proxy in members]
        added = [to_microseconds(proxy.discovered_at) for proxy in self._pool]
        urls = [proxy.url for proxy in self._pool]
        odds = [proxy.reliability.success_odds for proxy in self._pool]
        down_from = [proxy.reliability.down_from_us for proxy in self._pool]
        down_until = [proxy.reliability.down_until_us for proxy in self._pool]
        latency_mu = [proxy.reliability.latency_mu for proxy in self._pool]
        record = [health.record for health in self._health]
        menus = self._menus
        row_id, available, cursor = 0, 0, 0
        for day in self._days:
            start_us = to_microseconds(day_start(day))
            while available < len(members) and discovered[available] < start_us:
                available += 1
            for moment, validated_at, size in self._batches(day, available):
                while available < len(members) and discovered[available] < moment:
                    available += 1
                for offset in range(size):
                    i = member_index[(cursor + offset) % available]
                    row_id += 1
                    counted = moment >= added[i]  # before the add: no status row to update
                    if down_from[i] <= moment < down_until[i] or draw() >= odds[i]:
                        error_type, message = choice(menus[i])
                        if counted:
                            record[i](validated_at, False, None)
                        yield (row_id, urls[i], validated_at, 0, None, error_type, message)
                    else:
                        elapsed = exp(gauss(latency_mu[i], LATENCY_SIGMA))
                        if counted:
                            record[i](validated_at, True, elapsed)
                        yield (row_id, urls[i], validated_at, 1, elapsed, None, None)
                cursor = (cursor + size) % available
        self.count = row_id

    def status_rows(self) -> list[StatusRow]:
        """``proxy_statuses`` rows: one per proxy, as ProxyWhirl creates it with the
        identity (seed checks count; ``success_rate_7d`` NULL, as 0.3.3 leaves it)."""
        rows: list[StatusRow] = []
        for proxy, health in zip(self._pool, self._health, strict=True):
            added = proxy.discovered_at.strftime(DATETIME_TEXT_FORMAT)
            rows.append(
                (
                    proxy.url,
                    health.health_status,
                    health.last_success_at,
                    health.last_failure_at,
                    health.last_check_at,
                    health.consecutive_successes,
                    health.consecutive_failures,
                    health.total_checks,
                    health.total_successes,
                    health.avg_response_time_ms,
                    None,
                    health.last_check_at or added,
                )
            )
        return rows

    def _batches(self, day: date, capacity: int) -> list[tuple[int, str, int]]:
        """(epoch microseconds, validated_at text, size) of the day's batches, in time order.

        ``capacity`` is the pool size at the day's start: no batch checks a proxy twice.
        """
        if self._per_day == 0 or capacity == 0:
            return []
        rng = self._rng
        high = min(MAX_BATCH, capacity)
        low = max(1, high // 3)
        sizes: list[int] = []
        remaining = self._per_day
        while remaining:
            sizes.append(min(remaining, rng.randint(low, high)))
            remaining -= sizes[-1]
        if len(sizes) == 1 and self._per_day >= 2:  # room for both boundary batches
            sizes = [self._per_day - self._per_day // 2, self._per_day // 2]
        offsets = [0]
        if len(sizes) >= 2:
            offsets += sorted(rng.sample(range(1, _DAY_US - 1), len(sizes) - 2))
            offsets.append(_DAY_US - 1)
        start = day_start(day)
        start_us = to_microseconds(start)
        return [
            (
                start_us + offset,
                (start + timedelta(microseconds=offset)).strftime(DATETIME_TEXT_FORMAT),
                size,
            )
            for offset, size in zip(offsets, sizes, strict=True)
        ]


def _failure_menu(rng: random.Random, proxy: SampleProxy) -> tuple[tuple[str, str], ...]:
    """The (error_type, error_message) pairs a proxy's failed checks draw from."""
    menu = []
    for _ in range(6):
        error_type = rng.choices(ERROR_TYPES, _ERROR_WEIGHTS)[0]
        message = rng.choice(_MESSAGES[error_type]).format(
            host=proxy.host, port=proxy.port, url=proxy.url, seconds=rng.choice((5, 10, 15, 30))
        )
        if rng.random() < 0.15:  # remote hosts send back anything
            message = f"{message}: {rng.choice(HOSTILE_STRINGS)}"
        menu.append((error_type, message))
    if proxy.echoes_credentials:
        # A misbehaving upstream quoting the request back, credentials and all.
        leaked = proxy.url_with_credentials
        menu[:4] = [
            ("proxy_error", f"407 Proxy Authentication Required for {leaked}"),
            (
                "connection_refused",
                f"Cannot connect to proxy {leaked}: [Errno 104] Connection reset by peer",
            ),
            ("http_error", f"HTTP 502 Bad Gateway from {leaked} (upstream said: 'try again')"),
            ("proxy_error", f"ProxyError('Unable to connect to proxy', {leaked!r})"),
        ]
    return tuple(menu)


_MESSAGES: dict[str, tuple[str, ...]] = {
    "timeout": (
        "Request to https://httpbin.org/ip via {url} timed out after {seconds}s",
        "ReadTimeout: The read operation timed out",
        "ConnectTimeout: timed out",
    ),
    "connection_refused": (
        "[Errno 111] Connection refused",
        "ConnectError: [Errno 111] Connect call failed ('{host}', {port})",
        "ConnectError: All connection attempts failed",
    ),
    "ssl_error": (
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate "
        "in certificate chain (_ssl.c:1006)",
        "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)",
    ),
    "proxy_error": (
        "407 Proxy Authentication Required",
        "ProxyError: SOCKS5 server rejected connection: general SOCKS server failure",
        "RemoteProtocolError: Server disconnected without sending a response.",
    ),
    "http_error": (
        "HTTP 503 Service Unavailable",
        'HTTP 403 Forbidden: <html><head><title>403</title></head><body>Access "denied",'
        " sorry</body></html>",
        "HTTP 429 Too Many Requests\r\nRetry-After: 120",
    ),
    "dns_error": (
        "[Errno -2] Name or service not known: '{host}'",
        "[Errno -3] Temporary failure in name resolution",
    ),
}
