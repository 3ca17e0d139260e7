"""Which failures are worth retrying: transient ones retry, permanent ones fail the run at once.

Dagster retries a step on *any* exception once it has a ``RetryPolicy``; a ``Failure`` with
``allow_retries=False`` is the one exception it does not retry. Every export runs its
compute and its write inside ``fail_fast_on_permanent_errors``: a SQLite database locked by
a writer, an S3 5xx, throttling or a dropped connection propagate as they are (the policy
retries them); everything else (a missing or foreign database, a bad key, an unwritable
destination, a field the export does not have) becomes such a ``Failure`` with the original
error as its cause and its first line as the description, which is what the UI shows.

A run config is checked before any of this: Dagster builds the step's ``Config`` outside
the asset's code, so ``exports.export.FailFastConfig`` raises its validation errors as a
final ``Failure`` itself (``RunConfigError``).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from dagster import Backoff, Failure, Jitter, RetryPolicy

from export_assets.settings import current_settings

DEFAULT_MAX_RETRIES = 3
DEFAULT_RETRY_DELAY_SECONDS = 10.0

# S3's codes for "try again later" (HTTP 5xx and throttling).
_TRANSIENT_S3_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeoutException",
        "RequestLimitExceeded",
        "500",
        "502",
        "503",
        "504",
    }
)


def export_retry_policy() -> RetryPolicy:
    """The policy of every export asset: exponential backoff with jitter.

    ``EXPORT_MAX_RETRIES`` (3) and ``EXPORT_RETRY_DELAY_SECONDS`` (10) tune it; they are
    read when the code location loads, as the policy is part of the asset's definition.
    """
    settings = current_settings()
    return RetryPolicy(
        max_retries=settings.max_retries,
        delay=settings.retry_delay_seconds,
        backoff=Backoff.EXPONENTIAL,
        jitter=Jitter.PLUS_MINUS,
    )


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` may go away by itself (a busy database, an S3 hiccup)."""
    # Imported here: the IO manager imports this module while its package loads.
    from export_assets.lib.exports.destinations import DestinationError

    if isinstance(error, DestinationError):
        return False  # the destination already said what to fix
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _transient_itself(current):
            return True
        current = current.__cause__
    return False


def _transient_itself(error: BaseException) -> bool:
    if isinstance(error, sqlite3.OperationalError):
        text = str(error).lower()
        return "locked" in text or "busy" in text
    if "botocore.exceptions" in sys.modules:  # an S3 error exists only once botocore loaded
        from botocore.exceptions import ClientError, EndpointConnectionError, HTTPClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        if isinstance(error, ClientError):
            response = error.response
            code = str(response.get("Error", {}).get("Code", ""))
            status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            return code in _TRANSIENT_S3_CODES or status >= 500
        if isinstance(error, EndpointConnectionError):
            return False  # nothing listens there: a configuration error
        if isinstance(error, BotoConnectionError | HTTPClientError):
            return True
    return isinstance(error, ConnectionError | TimeoutError)


@contextmanager
def fail_fast_on_permanent_errors() -> Iterator[None]:
    """Let transient errors through for the retry policy; turn the rest into a final Failure."""
    try:
        yield
    except Failure:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise
        raise Failure(description=_first_line(exc), allow_retries=False) from exc


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextmanager
def stop_on_interrupt() -> Iterator[None]:
    """A step interrupted (SIGTERM, Ctrl-C, a termination from the UI) fails without a retry.

    Dagster applies a step's RetryPolicy to interrupts too: an ``export-assets materialize``
    sent SIGTERM would schedule a retry of the step and keep running, ignoring the stop.
    """
    try:
        yield
    except (Exception, GeneratorExit, SystemExit):
        raise
    except BaseException as exc:  # Dagster's interrupt error and KeyboardInterrupt
        raise Failure(
            description=f"interrupted ({type(exc).__name__}): the step stops without a retry; "
            "re-run the partition",
            allow_retries=False,
        ) from exc
