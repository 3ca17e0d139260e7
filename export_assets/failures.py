"""Reading why a run failed: the error a user can act on, not Dagster's wrappers."""

from __future__ import annotations

import re
from collections.abc import Sequence

from dagster import DagsterEvent
from dagster_shared.error import SerializableErrorInfo


def user_error(error: SerializableErrorInfo) -> SerializableErrorInfo:
    """The outermost error in the cause chain that Dagster did not raise itself.

    Dagster wraps what user code raised (``DagsterExecutionHandleOutputError`` ...); the
    wrapped error names the problem and the fix. Its own causes (an ``OSError`` under a
    ``DestinationError``) are details, so the walk stops there.
    """
    while error.cause is not None and (
        (error.cls_name or "").startswith("Dagster") or error.cls_name in _RETRY_WRAPPERS
    ):
        error = error.cause
    return error


# What the retry machinery wraps a user error in (export_assets.retries): a final Failure,
# or the step's last attempt after the retries ran out.
_RETRY_WRAPPERS = frozenset({"Failure", "RetryRequestedFromPolicy", "RetryRequested"})


def error_message(error: SerializableErrorInfo) -> str:
    """The error's message without the ``module.Class:`` prefix Dagster adds."""
    kind = error.cls_name or ""
    return re.sub(rf"^(?:[\w.]+\.)?{re.escape(kind)}: ", "", error.message.strip(), count=1)


def failure_reason(failures: Sequence[DagsterEvent]) -> str:
    """``Kind: message`` of the first failed step's user error."""
    error = failures[0].step_failure_data.error if failures else None
    if error is None:
        return "see the run in the Dagster UI"
    error = user_error(error)
    return f"{error.cls_name}: {error_message(error)}"
