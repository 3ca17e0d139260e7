"""Sensors: refresh today's partition when validations arrive; notify on failures and successes."""
# No "from __future__ import annotations": Dagster reads the sensors' resource annotations.

import json
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from export_assets.audit import PARTITION_TAG, exported_assets, failed_steps, requested_by
from export_assets.jobs import daily_export_job
from export_assets.notify import Notifier, digest_notification, failure_notification
from export_assets.schedules import run_tags
from export_assets.source.database import SourceError, connect_read_only
from export_assets.source.resource import ProxyWhirlSource

DEFAULT_MINIMUM_INTERVAL_SECONDS = 300


def _minimum_interval() -> int:
    text = os.environ.get("EXPORT_SENSOR_INTERVAL_SECONDS", "").strip()
    return int(text) if text.isdigit() else DEFAULT_MINIMUM_INTERVAL_SECONDS


def validation_watermark(proxywhirl: ProxyWhirlSource) -> int:
    """The highest id in ProxyWhirl's ``validation_results`` (0 when empty), read-only."""
    connection = connect_read_only(Path(proxywhirl.database), proxywhirl.busy_timeout_ms)
    try:
        row = connection.execute("SELECT max(id) FROM validation_results").fetchone()
    except sqlite3.Error as exc:
        raise SourceError(
            f"cannot read validation_results of {proxywhirl.database} ({exc}): is "
            "PROXYWHIRL_DB a ProxyWhirl database?"
        ) from exc
    finally:
        connection.close()
    return 0 if row is None or row[0] is None else int(row[0])


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


@run_failure_sensor(
    name="export_failure_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    description="Notifies by email and webhook (the notifier resource) when a run fails.",
)
def export_failure_sensor(context: RunFailureSensorContext, notifier: Notifier) -> None:
    run = context.dagster_run
    notification = failure_notification(
        notifier,
        run_id=run.run_id,
        job=run.job_name,
        partition=run.tags.get(PARTITION_TAG),
        failures=failed_steps(context.instance, run.run_id),
        requested_by=requested_by(run),
    )
    delivered = notifier.send(notification, context.log)
    context.log.info(f"failure of run {run.run_id} notified by {', '.join(delivered) or 'nothing'}")


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


EXPORT_SENSORS = [new_validations_sensor, export_failure_sensor, export_success_digest_sensor]
