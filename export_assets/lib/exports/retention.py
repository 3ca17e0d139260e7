"""Retention: delete whole export partitions that expired, exactly the files their manifests list.

A partition is ``{asset}/dt={day}/`` with its ``_manifest.json``. It expires when its day
is more than ``keep_days`` before today (UTC); when a size limit is set and the partitions
kept still exceed it, the oldest go first. Deleting a partition removes the files its
manifest lists, then the manifest (so a half-deleted partition never looks complete), and
on disk the folder if nothing else is in it. Nothing is ever deleted by prefix or glob:
files the exporter did not list stay, and so does a folder without a manifest. A manifest
naming a path that could lead elsewhere (``..``, a separator) is refused and its partition
skipped, as is a ``dt=`` folder that links out of the destination. Each partition is deleted
under its lease, so a run exporting it at that moment is never undercut. Byte totals count
what was actually deleted. Debris of killed runs (temporary files and incomplete uploads
older than ``DEBRIS_AGE``, leases whose holder is gone) is removed and reported.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from export_assets.lib.exports.destinations import (
    DEBRIS_AGE,
    Destination,
    UnsafePathError,
)
from export_assets.lib.exports.lease import (
    PartitionLease,
    clear_stale_lease,
    describe_stale_lease,
    lease_key,
    partition_of_lease,
)
from export_assets.lib.exports.manifest import (
    MANIFEST_NAME,
    PARTITION_FOLDER_PREFIX,
    ExportManifest,
    ManifestError,
    export_folders,
    is_partition_key,
    manifest_key,
    partition_folder,
)
from export_assets.lib.exports.s3 import S3Destination
from export_assets.settings import current_settings

DEFAULT_KEEP_DAYS = 30


@dataclass(frozen=True)
class PublishedPartition:
    """A partition with a readable manifest: what retention may delete."""

    asset: str
    partition: str
    files: tuple[str, ...]  # keys, the manifest last
    bytes: int  # as listed (planning); in a report, what was actually deleted
    manifest_version: str = ""  # the manifest's version when listed (compare-and-swap)

    @property
    def day(self) -> date:
        """The UTC day of the partition."""
        return date.fromisoformat(self.partition)


@dataclass
class RetentionReport:
    """What a retention pass deleted (or, dry, would delete) and what it kept."""

    deleted: list[PublishedPartition] = field(default_factory=list)
    kept: list[PublishedPartition] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "folder: why", nothing deleted there
    debris: list[str] = field(default_factory=list)  # killed runs' leftovers removed
    dry_run: bool = False

    @property
    def deleted_bytes(self) -> int:
        """Bytes actually deleted (dry: that would be): files that exist, nothing else."""
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
        out += [f"skipped {entry}" for entry in self.skipped]
        removed = "would remove" if self.dry_run else "removed"
        out += [f"{removed} debris {entry}" for entry in self.debris]
        out.append(
            f"{verb} {len(self.deleted)} partitions ({self.deleted_bytes:,} bytes); kept "
            f"{len(self.kept)} ({self.kept_bytes:,} bytes); {removed} {len(self.debris)} "
            "debris of killed runs"
        )
        return out


_NO_MANIFEST = f"no readable {MANIFEST_NAME}"


def published_partitions(destination: Destination) -> tuple[list[PublishedPartition], list[str]]:
    """Every partition with a manifest, oldest first; and the folders skipped, with why.

    Temporary files, incomplete uploads and leases are never partitions: only a ``dt=``
    folder with a valid manifest counts, and only what that manifest lists.
    """
    found: list[PublishedPartition] = []
    assets, skipped = export_folders(destination)
    for asset, folders in assets.items():
        for folder in folders:
            partition = folder.removeprefix(PARTITION_FOLDER_PREFIX)
            if not is_partition_key(partition):
                skipped.append(f"{asset}/{folder}: {_NO_MANIFEST}")
                continue
            try:
                listed = _listed_partition(destination, asset, partition)
            except (UnsafePathError, ManifestError) as exc:
                skipped.append(f"{asset}/{folder}: {exc}")
                continue
            if listed is None:
                skipped.append(f"{asset}/{folder}: {_NO_MANIFEST}")
                continue
            found.append(listed)
    found.sort(key=lambda p: (p.partition, p.asset))
    return found, skipped


def _listed_partition(
    destination: Destination, asset: str, partition: str
) -> PublishedPartition | None:
    key = manifest_key(asset, partition)
    current = destination.read_versioned(key)
    if current is None:
        return None
    data, version = current
    try:
        manifest = ExportManifest.from_json(data, where=destination.uri(key))
    except ManifestError:
        raise  # a tampered manifest: said as is
    except (ValueError, TypeError, KeyError):
        return None
    if manifest.asset != asset or manifest.partition != partition:
        return None
    base = partition_folder(asset, partition)
    files = tuple(f"{base}/{entry.path}" for entry in manifest.files)
    return PublishedPartition(
        asset, partition, (*files, key),
        sum(entry.bytes for entry in manifest.files) + len(data), version,
    )


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
    """Delete (unless ``dry_run``) the partitions ``plan_retention`` selects, then the
    debris of killed runs (temporary files, incomplete uploads, stale leases)."""
    partitions, skipped = published_partitions(destination)
    expired, kept = plan_retention(
        partitions, keep_days=keep_days, max_total_bytes=max_total_bytes, today=today
    )
    report = RetentionReport(kept=kept, skipped=skipped, dry_run=dry_run)
    for partition in expired:
        outcome = _delete_partition(destination, partition, dry_run=dry_run)
        if isinstance(outcome, str):
            report.skipped.append(outcome)
            if log is not None:
                log(f"skipped {outcome}")
            continue
        report.deleted.append(outcome)
        if log is not None:
            log(report.lines()[len(report.deleted) - 1])
    report.debris = _remove_debris(destination, dry_run=dry_run)
    return report


def _delete_partition(
    destination: Destination, partition: PublishedPartition, *, dry_run: bool
) -> PublishedPartition | str:
    """The partition as deleted (only files that existed, their real bytes), or why not."""
    folder = partition_folder(partition.asset, partition.partition)
    if dry_run:
        sizes = {key: destination.size_of(key) for key in partition.files}
        present = tuple(key for key, size in sizes.items() if size is not None)
        return replace(partition, files=present, bytes=sum(sizes[key] or 0 for key in present))
    # Under the partition's lease, so a run exporting it now is never undercut.
    lease = PartitionLease(
        destination, partition.asset, partition.partition, f"retention-{uuid.uuid4().hex}",
        wait_seconds=0,
    )
    holder = lease.try_acquire()
    if holder is not None:
        return f"{folder}: being exported by {holder.describe()}; left for the next pass"
    try:
        current = destination.read_versioned(manifest_key(partition.asset, partition.partition))
        if current is None or current[1] != partition.manifest_version:
            return (
                f"{folder}: its {MANIFEST_NAME} changed since it was listed; left for the next pass"
            )
        deleted: list[str] = []
        total = 0
        for key in partition.files:  # data files first, the manifest last
            size = destination.size_of(key)
            if size is None:
                continue  # already gone (or not a regular file): nothing deleted, nothing counted
            destination.delete(key)
            deleted.append(key)
            total += size
        destination.prune(folder)  # on disk, the folder too if nothing else is in it
    finally:
        lease.release()
    return replace(partition, files=tuple(deleted), bytes=total)


def _remove_debris(destination: Destination, *, dry_run: bool) -> list[str]:
    """Temporary files and uploads older than ``DEBRIS_AGE``, and leases whose holder is gone."""
    removed: list[str] = []
    if isinstance(destination, S3Destination):
        # Incomplete uploads do not show as folders: one listing of the whole prefix.
        removed += destination.abort_incomplete_uploads(DEBRIS_AGE, dry_run=dry_run)
    for asset, folders in export_folders(destination)[0].items():
        try:
            for folder in folders:
                removed += destination.remove_debris(
                    f"{asset}/{folder}", DEBRIS_AGE, dry_run=dry_run
                )
                if not dry_run:
                    destination.prune(f"{asset}/{folder}")  # a killed first export
            for name in destination.list_files(asset):
                lease_partition = partition_of_lease(name)
                if lease_partition is None or not is_partition_key(lease_partition):
                    continue
                key = lease_key(asset, lease_partition)
                stale = describe_stale_lease(destination, key) if dry_run else (
                    clear_stale_lease(destination, key)
                )
                if stale is not None:
                    removed.append(stale)
        except UnsafePathError:
            continue  # reported with the partitions
    return sorted(set(removed))  # an upload can be found by both listings


def default_keep_days() -> int:
    """``EXPORT_RETENTION_DAYS``, or 30."""
    return current_settings().retention_days
