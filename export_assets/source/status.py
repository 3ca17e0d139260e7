"""ProxyWhirl's health rules, applied one validation at a time.

ProxyWhirl updates ``proxy_statuses`` after every check with these rules; replaying
``validation_results`` in ``(validated_at, id)`` order through :class:`ProxyHealth`
rebuilds the status a proxy had at any moment.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    """Replay one proxy's checks ``(validated_at, is_valid, response_time_ms)`` in order.

    Returns the health columns of the pool, in its order: health_status, last_check_at,
    last_success_at, last_failure_at, consecutive_successes, consecutive_failures,
    total_checks, total_successes, success_rate, checks_7d, success_rate_7d and
    avg_response_time_ms. The 7-day figures count checks at or after ``window_start``
    (DATETIME text, compared as text).
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
        health.avg_response_time_ms,
    )
