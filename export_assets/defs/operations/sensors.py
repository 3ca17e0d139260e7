"""Sensors: refresh today's partition when validations arrive; notify on failures and successes."""
# No "from __future__ import annotations": Dagster reads the sensors' resource annotations.

import json
import logging
import weakref
from datetime import UTC, datetime
from pathlib import Path

from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RepositoryDefinition,
    RunFailureSensorContext,
    RunRequest,
    RunsFilter,
    RunStatusChangeRecordsFilter,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from export_assets.defs.exports.jobs import daily_export_job
from export_assets.defs.operations.audit import (
    PARTITION_TAG,
    exported_assets,
    failed_steps,
    requested_by,
)
from export_assets.defs.operations.schedules import run_tags
from export_assets.defs.resources.notifier import (
    Notifier,
    digest_notification,
    failure_notification,
)
from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.lib.source.database import SourceError, database_version
from export_assets.settings import current_settings

DEFAULT_MINIMUM_INTERVAL_SECONDS = 300


def _minimum_interval() -> int:
    # Read when the code location loads: the interval is part of the sensor's definition.
    return current_settings().sensor_interval_seconds


def validation_watermark(proxywhirl: ProxyWhirlSource) -> int:
    """The highest id in ProxyWhirl's ``validation_results`` (0 when empty), read-only."""
    return database_version(Path(proxywhirl.database), proxywhirl.busy_timeout_ms)[0]


def today_partition() -> str:
    """Today's open partition (UTC)."""
    return datetime.now(UTC).date().isoformat()


@sensor(
    name="new_validations_sensor",
    job=daily_export_job,
    minimum_interval_seconds=_minimum_interval(),
    default_status=DefaultSensorStatus.STOPPED,
    description="Watches the highest id of ProxyWhirl's validation_results; when new rows "
    "arrived, refreshes today's open partition (run key: partition + watermark).",
)
def new_validations_sensor(
    context: SensorEvaluationContext, proxywhirl: ProxyWhirlSource
) -> SensorResult | SkipReason:
    try:
        watermark = validation_watermark(proxywhirl)
    except SourceError as exc:
        return SkipReason(str(exc))
    seen = json.loads(context.cursor)["watermark"] if context.cursor else None
    cursor = json.dumps({"watermark": watermark})
    if seen is None:
        return SensorResult(
            skip_reason=f"first look: validation_results up to id {watermark}; runs start "
            "when newer rows arrive",
            cursor=cursor,
        )
    if watermark <= seen:
        return SensorResult(
            skip_reason=f"no new validation results (highest id {watermark})", cursor=cursor
        )
    partition = today_partition()
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=f"{partition}:{watermark}",
                partition_key=partition,
                tags={
                    **run_tags("new_validations_sensor", daily_export_job.name),
                    "export/watermark": str(watermark),
                },
            )
        ],
        cursor=cursor,
    )


# Runs the failure sensors have notified carry this tag (value: the sensor that did it), so
# that no run is notified twice whichever sensor sees it first.
FAILURE_NOTIFIED_TAG = "export/failure_notified"
# RUN_FAILURE events read per tick by export_cli_failure_sensor; the rest waits for the next one.
FAILURE_EVENTS_PER_TICK = 25
UNCONFIGURED_NOTIFIER = (
    "failure notifications are off: the notifier has no channel, so failed export runs notify "
    "nobody. Set EXPORT_WEBHOOK_URL (and EXPORT_WEBHOOK_SECRET to sign it) for a webhook, "
    "and/or EXPORT_SMTP_HOST with EXPORT_EMAIL_TO (plus EXPORT_SMTP_PORT, EXPORT_SMTP_USER, "
    "EXPORT_SMTP_PASSWORD, EXPORT_EMAIL_FROM as needed) for email, in the environment of the "
    "code location (e.g. .env), then reload it"
)
# The run-status sensor calls its function once per failed run with the tick's logger: the
# loggers already warned about an unconfigured notifier, so that a tick warns once.
_WARNED_TICKS: "weakref.WeakSet[logging.Logger]" = weakref.WeakSet()


def notifier_problem(notifier: Notifier) -> str | None:
    """Why ``notifier`` notifies nobody (or not by email as meant), or None when it is set up."""
    if notifier.smtp_host and not notifier.email_to:
        if notifier.webhook_url:
            return (
                f"failure emails are off: EXPORT_SMTP_HOST is {notifier.smtp_host!r} but "
                "EXPORT_EMAIL_TO is empty; set EXPORT_EMAIL_TO to comma-separated addresses "
                "(the webhook still notifies)"
            )
        return (
            f"failure notifications are off: EXPORT_SMTP_HOST is {notifier.smtp_host!r} but "
            "EXPORT_EMAIL_TO is empty and EXPORT_WEBHOOK_URL is unset; set EXPORT_EMAIL_TO to "
            "comma-separated addresses (and/or EXPORT_WEBHOOK_URL), then reload the code location"
        )
    if not notifier.smtp_host and not notifier.webhook_url:
        return UNCONFIGURED_NOTIFIER
    return None


def notify_failed_run(
    instance: DagsterInstance,
    run: DagsterRun,
    notifier: Notifier,
    log: logging.Logger,
    sensor_name: str,
) -> list[str] | None:
    """Notify the failure of ``run`` once: the channels that delivered, None if done before."""
    if FAILURE_NOTIFIED_TAG in run.tags:
        log.info(
            f"failure of run {run.run_id} was already handled by {run.tags[FAILURE_NOTIFIED_TAG]}"
        )
        return None
    notification = failure_notification(
        notifier,
        run_id=run.run_id,
        job=run.job_name,
        partition=run.tags.get(PARTITION_TAG),
        failures=failed_steps(instance, run.run_id),
        requested_by=requested_by(run),
    )
    delivered = notifier.send(notification, log)
    # Tagged after sending: a crash in between may notify twice, never zero times.
    instance.add_run_tags(run.run_id, {FAILURE_NOTIFIED_TAG: sensor_name})
    log.info(f"failure of run {run.run_id} notified by {', '.join(delivered) or 'nothing'}")
    return delivered


@run_failure_sensor(
    name="export_failure_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    description="Notifies by email and webhook (the notifier resource) when a run launched "
    "from this code location fails (UI, schedules, sensors, backfills). Runs executed in "
    "process (export-assets materialize, dagster asset materialize, dagster job execute) are "
    "export_cli_failure_sensor's.",
)
def export_failure_sensor(context: RunFailureSensorContext, notifier: Notifier) -> None:
    problem = notifier_problem(notifier)
    if problem and context.log not in _WARNED_TICKS:
        _WARNED_TICKS.add(context.log)
        context.log.warning(problem)
    notify_failed_run(
        context.instance, context.dagster_run, notifier, context.log, "export_failure_sensor"
    )


def is_export_run(
    instance: DagsterInstance, run: DagsterRun, repository: RepositoryDefinition | None
) -> bool:
    """Whether ``run`` exported assets of this code location, or ran one of its other jobs.

    Any run counts when the location is unknown (a sensor evaluated outside a code location).
    """
    if repository is None:
        return True
    # Judged by the assets a run set out to materialize, not by its job's name: every code
    # location has an implicit asset job of the same name, and `materialize(...)` calls its
    # run `__ephemeral_asset_job__`.
    targets = set(run.asset_selection or ()) | {
        entry.dagster_event.asset_key
        for entry in instance.all_logs(
            run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        )
        if entry.dagster_event is not None and entry.dagster_event.asset_key is not None
    }
    if targets:
        return any(key in repository.assets_defs_by_key for key in targets)
    return repository.has_job(run.job_name)


def _failure_cursor(text: str | None) -> int | None:
    """The storage id in export_cli_failure_sensor's cursor; None when unset or not its own."""
    try:
        value = json.loads(text or "null")
    except ValueError:
        return None
    after = value.get("after_storage_id") if isinstance(value, dict) else None
    return after if isinstance(after, int) and not isinstance(after, bool) else None


@sensor(
    name="export_cli_failure_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    description="Notifies by email and webhook when a run executed in process fails "
    "(export-assets materialize, dagster asset materialize, dagster job execute): such runs "
    "have no code-location origin, so export_failure_sensor never sees them. Warns once per "
    "tick while no notification channel is configured.",
)
def export_cli_failure_sensor(context: SensorEvaluationContext, notifier: Notifier) -> SensorResult:
    problem = notifier_problem(notifier)
    if problem:
        context.log.warning(problem)
    instance = context.instance
    cursor = _failure_cursor(context.cursor)
    if cursor is None:
        if context.cursor:
            context.log.warning(
                f"cursor {context.cursor!r} of export_cli_failure_sensor is not "
                '{"after_storage_id": N} (set by hand?): replaced, watching run failures from '
                "now on; failures before this tick are not notified"
            )
        # Like Dagster's run-status sensors: start from now, not from every past failure.
        [*latest] = instance.fetch_run_status_changes(
            DagsterEventType.RUN_FAILURE, limit=1, ascending=False
        ).records
        after = latest[0].storage_id if latest else 0
        return SensorResult(
            skip_reason=f"first look: watching run failures after event {after}"
            + (f"; {problem}" if problem else ""),
            cursor=json.dumps({"after_storage_id": after}),
        )
    after = cursor
    records = instance.fetch_run_status_changes(
        RunStatusChangeRecordsFilter(
            event_type=DagsterEventType.RUN_FAILURE, after_storage_id=after
        ),
        limit=FAILURE_EVENTS_PER_TICK,
        ascending=True,
    ).records
    run_ids = list(dict.fromkeys(record.event_log_entry.run_id for record in records))
    runs = instance.get_runs(RunsFilter(run_ids=run_ids)) if run_ids else []
    notified: list[str] = []
    for run in sorted(runs, key=lambda r: run_ids.index(r.run_id)):
        # A run with an origin was launched from a code location: export_failure_sensor's.
        if run.remote_job_origin is not None or not is_export_run(
            instance, run, context.repository_def
        ):
            continue
        delivered = notify_failed_run(
            instance, run, notifier, context.log, "export_cli_failure_sensor"
        )
        if delivered is not None:
            notified.append(f"{run.run_id} ({', '.join(delivered) or 'nobody'})")
    if records:
        after = records[-1].storage_id
    summary = (
        f"notified the failure of {len(notified)} in-process run(s): {'; '.join(notified)}"
        if notified
        else "no new failed in-process export run"
    )
    return SensorResult(
        skip_reason=summary + (f"; {problem}" if problem else ""),
        cursor=json.dumps({"after_storage_id": after}),
    )


@run_status_sensor(
    name="export_success_digest_sensor",
    run_status=DagsterRunStatus.SUCCESS,
    default_status=DefaultSensorStatus.STOPPED,
    description="One digest message per successful scheduled run (when the notifier's "
    "success_digest is on): every asset exported, with rows and bytes.",
)
def export_success_digest_sensor(context: RunStatusSensorContext, notifier: Notifier) -> None:
    run = context.dagster_run
    if not notifier.success_digest or "dagster/schedule_name" not in run.tags:
        return
    notification = digest_notification(
        notifier,
        run_id=run.run_id,
        job=run.job_name,
        partition=run.tags.get(PARTITION_TAG),
        exported=exported_assets(context.instance, run.run_id),
        requested_by=requested_by(run),
    )
    notifier.send(notification, context.log)


EXPORT_SENSORS = [
    new_validations_sensor,
    export_failure_sensor,
    export_cli_failure_sensor,
    export_success_digest_sensor,
]
