"""The operations domain's definitions: what runs the exports and keeps them in order."""

from __future__ import annotations

from dagster import Definitions

from export_assets.defs.operations.backfill_start import backfill_start_sensor
from export_assets.defs.operations.export_audit_log import audit_log_job, export_audit_log
from export_assets.defs.operations.restore import RESTORE_JOBS
from export_assets.defs.operations.retention import retention_job
from export_assets.defs.operations.run_sweep import dead_run_sweep_sensor
from export_assets.defs.operations.schedules import export_schedules
from export_assets.defs.operations.sensors import EXPORT_SENSORS


def definitions() -> Definitions:
    """The audit trail, restore and retention jobs, the schedules and the sensors."""
    return Definitions(
        assets=[export_audit_log],
        jobs=[*RESTORE_JOBS, retention_job, audit_log_job],
        schedules=export_schedules(),
        sensors=[*EXPORT_SENSORS, dead_run_sweep_sensor, backfill_start_sensor],
    )
