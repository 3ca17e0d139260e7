"""``retention_job``: deletes expired export partitions from the Dagster UI, a schedule or
the CLI; what it deletes and why is ``export_assets.lib.exports.retention``."""

# No "from __future__ import annotations": Dagster reads the op's config and resource annotations.

from dagster import MetadataValue, OpExecutionContext, job, op
from pydantic import Field

from export_assets.defs.exports.config import FailFastConfig
from export_assets.defs.operations.audit import TEMPLATE_TAG
from export_assets.defs.resources.store import ExportStore
from export_assets.defs.retries import export_retry_policy
from export_assets.lib.exports.retention import apply_retention, default_keep_days


class RetentionConfig(FailFastConfig):
    """How much of the exports the retention job keeps."""

    keep_days: int | None = Field(
        default=None,
        ge=0,
        description="Keep partitions of this many days before today (UTC). Unset: "
        "EXPORT_RETENTION_DAYS, or 30.",
    )
    max_total_bytes: int | None = Field(
        default=None,
        ge=0,
        description="When the partitions kept exceed this many bytes, delete the oldest first.",
    )
    dry_run: bool = Field(default=False, description="Report what would go; delete nothing.")


@op(retry_policy=export_retry_policy())
def apply_export_retention(
    context: OpExecutionContext, config: RetentionConfig, export_store: ExportStore
) -> None:
    """Delete expired export partitions (files listed by their manifests, then the manifest)."""
    keep_days = config.keep_days if config.keep_days is not None else default_keep_days()
    report = apply_retention(
        export_store.open(),
        keep_days=keep_days,
        max_total_bytes=config.max_total_bytes,
        dry_run=config.dry_run,
        log=context.log.info,
    )
    for line in report.lines()[len(report.deleted) :]:
        context.log.info(line)
    context.add_output_metadata(
        {
            "destination": MetadataValue.text(export_store.destination),
            "keep_days": MetadataValue.int(keep_days),
            "dry_run": MetadataValue.bool(config.dry_run),
            "deleted_partitions": MetadataValue.int(len(report.deleted)),
            "deleted_bytes": MetadataValue.int(report.deleted_bytes),
            "debris_removed": MetadataValue.int(len(report.debris)),
            "skipped": MetadataValue.int(len(report.skipped)),
            "deleted": MetadataValue.json(
                [{"asset": p.asset, "partition": p.partition} for p in report.deleted]
            ),
        }
    )


@job(
    description="Retention: deletes export partitions older than keep_days (30 by default), "
    "oldest first over max_total_bytes; only files their manifests list.",
    tags={TEMPLATE_TAG: "retention_job"},
)
def retention_job() -> None:
    apply_export_retention()
