"""``restore_pool_job`` and ``restore_config_job``: restore from the Dagster UI, typed config.

Keys never come from run config: EXPORT_ENCRYPTION_KEY / EXPORT_PASSWORD, the
ProxyWhirl keys and reference placeholders are read from the run's environment.
"""
# No "from __future__ import annotations": Dagster reads the ops' config annotations.

from pathlib import Path
from typing import Literal

from dagster import Failure, MetadataValue, OpExecutionContext, job, op
from pydantic import Field

from export_assets.defs.exports.config import FailFastConfig
from export_assets.lib.restore.config import restore_config
from export_assets.lib.restore.pool import restore_pool
from export_assets.lib.restore.verify import RestoreError


class RestorePoolConfig(FailFastConfig):
    """Which proxy_list export to restore into which ProxyWhirl database."""

    export: str = Field(description="The export's dt=YYYY-MM-DD folder (or its manifest).")
    database: str = Field(description="ProxyWhirl's proxies.db (created if it does not exist).")
    on_duplicate: Literal["skip", "overwrite", "merge"] = Field(
        default="skip",
        description="A URL already in the database: skip it, overwrite it, or merge (fill "
        "empty fields, keep its status).",
    )
    history: str | None = Field(
        default=None,
        description="Also replay the validation_events partitions of these days, "
        "START..END (UTC, inclusive), into validation_results.",
    )
    events: str | None = Field(
        default=None,
        description="The validation_events folder history reads (default: beside the export).",
    )
    dry_run: bool = Field(default=False, description="Report the diff; write nothing.")


class RestoreConfigConfig(FailFastConfig):
    """Which pool_config export to restore into which TOML file."""

    export: str = Field(description="The export's dt=YYYY-MM-DD folder (or its manifest).")
    to: str = Field(description="proxywhirl.toml (or pyproject.toml) to write.")
    dry_run: bool = Field(default=False, description="Report the diff; write nothing.")


@op(description="Verify a proxy_list export and restore it into proxies.db in one transaction.")
def restore_pool_op(context: OpExecutionContext, config: RestorePoolConfig) -> None:
    try:
        diff = restore_pool(
            Path(config.export),
            Path(config.database),
            on_duplicate=config.on_duplicate,
            dry_run=config.dry_run,
            history=config.history,
            events=None if config.events is None else Path(config.events),
        )
    except RestoreError as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    context.log.info(diff.summary())
    for note in diff.notes:
        context.log.warning(note)
    context.add_output_metadata(
        {
            "added": MetadataValue.int(len(diff.added)),
            "updated": MetadataValue.int(len(diff.updated)),
            "skipped": MetadataValue.int(len(diff.skipped)),
            "history_results": MetadataValue.int(diff.history.added if diff.history else 0),
            "dry_run": MetadataValue.bool(diff.dry_run),
        }
    )


@op(description="Verify a pool_config export and write it as TOML ProxyWhirl loads.")
def restore_config_op(context: OpExecutionContext, config: RestoreConfigConfig) -> None:
    try:
        diff = restore_config(Path(config.export), Path(config.to), dry_run=config.dry_run)
    except RestoreError as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    context.log.info(diff.summary())
    for line in diff.lines():
        context.log.info(line)


@job(description="Restore a proxy_list export into proxies.db (keys from the environment).")
def restore_pool_job() -> None:
    restore_pool_op()


@job(description="Restore a pool_config export as proxywhirl.toml (keys from the environment).")
def restore_config_job() -> None:
    restore_config_op()


RESTORE_JOBS = [restore_pool_job, restore_config_job]
