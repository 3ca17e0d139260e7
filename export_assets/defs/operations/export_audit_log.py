"""``export_audit_log``: the audit trail of one UTC day, read from Dagster's instance."""
# No "from __future__ import annotations": Dagster reads the config annotation.

from datetime import UTC, datetime, time

import pyarrow as pa
from dagster import AssetSelection, define_asset_job

from export_assets.defs.exports.config import ExportConfig
from export_assets.defs.exports.daily import DayContext, daily_export
from export_assets.defs.operations.audit import HISTORY_FIELDS, TEMPLATE_TAG, export_history
from export_assets.defs.partitions import next_day, partition_day
from export_assets.lib.exports import Export

OPERATIONS_GROUP = "export_operations"

_INTEGERS = {"rows", "bytes"}
AUDIT_LOG_SCHEMA = pa.schema(
    [
        pa.field(name, pa.int64() if name in _INTEGERS else pa.string(), nullable=name in _INTEGERS)
        for name in HISTORY_FIELDS
    ]
)


class AuditLogConfig(ExportConfig):
    """Run config of ``export_audit_log``: the export options (csv or jsonl, gzip by default)."""

    # An unknown name in fields is refused at launch.
    field_names = tuple(AUDIT_LOG_SCHEMA.names)


@daily_export(
    schema=AUDIT_LOG_SCHEMA,
    group_name=OPERATIONS_GROUP,
    kinds={"dagster", "csv"},
    description=(
        "The day's audit trail from Dagster's run history: every export materialized in "
        "the UTC day (who requested it, job, run, asset, partition, uri, rows, bytes, sha256, "
        "credential policy, run status) and every failed step with its error's first line. "
        "The same records as `export-assets history --json`."
    ),
)
def export_audit_log(context: DayContext, config: AuditLogConfig) -> Export:
    day = partition_day(context.partition_key)
    since = datetime.combine(day, time(), UTC)
    until = datetime.combine(next_day(day), time(), UTC)
    records = [
        record
        for record in export_history(context.instance, since=since, until=until)
        if record.asset != "export_audit_log"
    ]
    context.log.info(f"{len(records)} audit records for {day}")
    columns = {name: [getattr(r, name) for r in records] for name in HISTORY_FIELDS}
    batch = pa.RecordBatch.from_pydict(columns, schema=AUDIT_LOG_SCHEMA)
    return Export(
        schema=AUDIT_LOG_SCHEMA,
        batches=iter([batch]),
        options=config.options(),
        source={"dagster_instance": "run history and event log", "day": day.isoformat()},
    )


audit_log_job = define_asset_job(
    name="audit_log_job",
    selection=AssetSelection.assets("export_audit_log"),
    tags={TEMPLATE_TAG: "audit_log_job"},
    description="The day's audit trail (export_audit_log) as gzip-compressed CSV.",
)
