"""Retention: delete whole export partitions that expired, exactly the files their manifests list.

A partition is ``{asset}/dt={day}/`` with its ``_manifest.json``. It expires when its day
is more than ``keep_days`` before today (UTC); when a size limit is set and the partitions
kept still exceed it, the oldest go first. Deleting a partition removes the files its
manifest lists, then the manifest (so a half-deleted partition never looks complete), and
on disk the folder if nothing else is in it. Nothing is ever deleted by prefix or glob:
files the exporter did not list stay, and so does a folder without a manifest.
"""

# No "from __future__ import annotations": Dagster reads the op's config and resource annotations.

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from dagster import Config, MetadataValue, OpExecutionContext, job, op
from pydantic import Field

from export_assets.exports.destinations import Destination, LocalDestination
from export_assets.exports.manifest import (
    MANIFEST_NAME,
    PARTITION_FOLDER_PREFIX,
    ExportManifest,
    manifest_key,
    partition_folder,
)
from export_assets.exports.store import ExportStore
from export_assets.retries import export_retry_policy
from export_assets.settings import env_number

DEFAULT_KEEP_DAYS = 30


@dataclass(frozen=True)
class PublishedPartition:
    """A partition with a readable manifest: what retention may delete."""

    asset: str
    partition: str
    files: tuple[str, ...]  # keys, the manifest last
    bytes: int

    @property
    def day(self) -> date:
        """The UTC day of the partition."""
        return date.fromisoformat(self.partition)


@dataclass
class RetentionReport:
    """What a retention pass deleted (or, dry, would delete) and what it kept."""

    deleted: list[PublishedPartition] = field(default_factory=list)
    kept: list[PublishedPartition] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # folders without a readable manifest
    dry_run: bool = False

    @property
    def deleted_bytes(self) -> int:
        """Bytes of the deleted partitions, as their manifests list them."""
        return sum(p.bytes for p in self.deleted)

    @property
    def kept_bytes(self) -> int:
        """Bytes of the partitions kept."""
        return sum(p.bytes for p in self.kept)

    def lines(self) -> list[str]:
        """One line per deleted partition and a summary, for the CLI and the run log."""
        verb = "would delete" if self.dry_run else "deleted"
        out = [
            f"{verb} {p.asset} {p.partition} ({len(p.files)} files, {p.bytes:,} bytes)"
            for p in self.deleted
        ]
        out += [f"skipped {folder}: no readable {MANIFEST_NAME}" for folder in self.skipped]
        out.append(
            f"{verb} {len(self.deleted)} partitions ({self.deleted_bytes:,} bytes); kept "
            f"{len(self.kept)} ({self.kept_bytes:,} bytes)"
        )
        return out


def published_partitions(destination: Destination) -> tuple[list[PublishedPartition], list[str]]:
    """Every partition with a manifest, oldest first; and the folders without one."""
    found: list[PublishedPartition] = []
    skipped: list[str] = []
    for asset in destination.list_folders(""):
        for folder in destination.list_folders(asset):
            if not folder.startswith(PARTITION_FOLDER_PREFIX):
                continue
            partition = folder.removeprefix(PARTITION_FOLDER_PREFIX)
            try:
                date.fromisoformat(partition)
            except ValueError:
                skipped.append(f"{asset}/{folder}")
                continue
            key = manifest_key(asset, partition)
            data = destination.read_bytes(key)
            manifest: ExportManifest | None = None
            if data is not None:
                try:
                    manifest = ExportManifest.from_json(data)
                except (ValueError, TypeError, KeyError):
                    manifest = None
            if manifest is None or manifest.asset != asset or manifest.partition != partition:
                skipped.append(f"{asset}/{folder}")
                continue
            base = partition_folder(asset, partition)
            files = tuple(
                f"{base}/{entry.path}"
                for entry in manifest.files
                if entry.path and "/" not in entry.path and entry.path not in {".", ".."}
            )
            found.append(
                PublishedPartition(
                    asset, partition, (*files, key),
                    sum(entry.bytes for entry in manifest.files) + len(data or b""),
                )
            )
    found.sort(key=lambda p: (p.partition, p.asset))
    return found, skipped


def plan_retention(
    partitions: list[PublishedPartition],
    *,
    keep_days: int,
    max_total_bytes: int | None = None,
    today: date | None = None,
) -> tuple[list[PublishedPartition], list[PublishedPartition]]:
    """(to delete, to keep): older than ``keep_days``, then oldest first over the size."""
    if keep_days < 0:
        raise ValueError(f"keep_days={keep_days} is negative: keep 0 days or more")
    if max_total_bytes is not None and max_total_bytes < 0:
        raise ValueError(f"max_total_bytes={max_total_bytes} is negative")
    cutoff = (today or datetime.now(UTC).date()) - timedelta(days=keep_days)
    ordered = sorted(partitions, key=lambda p: (p.partition, p.asset))
    expired = [p for p in ordered if p.day < cutoff]
    kept = [p for p in ordered if p.day >= cutoff]
    if max_total_bytes is not None:
        total = sum(p.bytes for p in kept)
        while kept and total > max_total_bytes:
            oldest = kept.pop(0)
            expired.append(oldest)
            total -= oldest.bytes
    return expired, kept


def apply_retention(
    destination: Destination,
    *,
    keep_days: int = DEFAULT_KEEP_DAYS,
    max_total_bytes: int | None = None,
    dry_run: bool = False,
    today: date | None = None,
    log: Callable[[str], None] | None = None,
) -> RetentionReport:
    """Delete (unless ``dry_run``) the partitions ``plan_retention`` selects."""
    partitions, skipped = published_partitions(destination)
    expired, kept = plan_retention(
        partitions, keep_days=keep_days, max_total_bytes=max_total_bytes, today=today
    )
    report = RetentionReport(kept=kept, skipped=skipped, dry_run=dry_run)
    for partition in expired:
        if not dry_run:
            for key in partition.files:  # data files first, the manifest last
                destination.delete(key)
            if isinstance(destination, LocalDestination):
                _remove_if_empty(destination, partition)
        report.deleted.append(partition)
        if log is not None:
            log(report.lines()[len(report.deleted) - 1])
    return report


def _remove_if_empty(destination: LocalDestination, partition: PublishedPartition) -> None:
    folder = destination.path(partition_folder(partition.asset, partition.partition))
    with contextlib.suppress(OSError):
        folder.rmdir()  # only succeeds when nothing else is in it


def default_keep_days() -> int:
    """``EXPORT_RETENTION_DAYS``, or 30."""
    return env_number(
        "EXPORT_RETENTION_DAYS", DEFAULT_KEEP_DAYS, int, what="a whole number of days"
    )


class RetentionConfig(Config):
    """How much of the exports the retention job keeps."""

    keep_days: int | None = Field(
        default=None, ge=0,
        description="Keep partitions of this many days before today (UTC). Unset: "
        "EXPORT_RETENTION_DAYS, or 30.",
    )  # fmt: skip
    max_total_bytes: int | None = Field(
        default=None, ge=0,
        description="When the partitions kept exceed this many bytes, delete the oldest first.",
    )  # fmt: skip
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
            "deleted": MetadataValue.json(
                [{"asset": p.asset, "partition": p.partition} for p in report.deleted]
            ),
        }
    )


@job(
    description="Retention: deletes export partitions older than keep_days (30 by default), "
    "oldest first over max_total_bytes; only files their manifests list.",
    run_tags={"export/template": "retention_job"},
)
def retention_job() -> None:
    apply_export_retention()
