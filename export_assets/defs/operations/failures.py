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


# What the retry machinery wraps a user error in (export_assets.defs.retries): a final Failure,
# or the step's last attempt after the retries ran out.
_RETRY_WRAPPERS = frozenset({"Failure", "RetryRequestedFromPolicy", "RetryRequested"})


def error_message(error: SerializableErrorInfo) -> str:
    """The error's message without the ``module.Class:`` prefix Dagster adds."""
    kind = error.cls_name or ""
    return re.sub(rf"^(?:[\w.]+\.)?{re.escape(kind)}: ", "", error.message.strip(), count=1)


def step_failure_message(event: DagsterEvent) -> str:
    """One line a user can act on: the ``Failure`` description, else ``Kind: message``."""
    data = event.step_failure_data
    described = data.user_failure_data.description if data.user_failure_data else None
    if described:
        return _first_line(described)
    if data.error is None:
        return "see the run in the Dagster UI"
    error = user_error(data.error)
    return _first_line(f"{error.cls_name}: {error_message(error)}")


def grouped_step_failures(failures: Sequence[DagsterEvent]) -> list[tuple[list[str], str]]:
    """Each distinct failure message once, with the steps that failed with it, in order.

    A missing database fails every asset of a job with the same message: it is said once.
    """
    steps_by_message: dict[str, list[str]] = {}
    for event in failures:
        steps_by_message.setdefault(step_failure_message(event), []).append(event.step_key or "run")
    return [(steps, message) for message, steps in steps_by_message.items()]


def _first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else text
