"""Blocking checks that re-read what an export wrote and prove it against its manifest."""
# No "from __future__ import annotations": Dagster reads the check's resource annotations.

import hashlib
from collections.abc import Sequence

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetsDefinition,
    MetadataValue,
    asset_check,
)

from export_assets.exports.io_manager import read_manifest
from export_assets.exports.manifest import manifest_key, partition_folder
from export_assets.exports.readers import count_rows
from export_assets.exports.store import ExportStore
from export_assets.partitions import daily_partitions

READ_CHUNK = 1 << 20


def export_checks(assets: Sequence[AssetsDefinition]) -> list[AssetChecksDefinition]:
    """One ``export_is_intact`` check per export asset."""
    return [_export_is_intact(asset) for asset in assets]


def _export_is_intact(asset: AssetsDefinition) -> AssetChecksDefinition:
    @asset_check(
        asset=asset,
        name="export_is_intact",
        blocking=True,
        partitions_def=daily_partitions,
        description=(
            "Re-reads the partition through its destination: the manifest exists, every data "
            "file parses in its format, and its rows, bytes and sha256 equal the manifest's."
        ),
    )
    def export_is_intact(
        context: AssetCheckExecutionContext, export_store: ExportStore
    ) -> AssetCheckResult:
        name = asset.key.path[-1]
        partition = context.partition_key
        destination = export_store.open()
        manifest = read_manifest(destination, manifest_key(name, partition))
        if manifest is None:
            return AssetCheckResult(
                passed=False,
                metadata={"problem": f"{name} {partition} has no manifest"},
            )
        problems: list[str] = []
        for entry in manifest.files:
            key = f"{partition_folder(name, partition)}/{entry.path}"
            digest = hashlib.sha256()
            size = 0
            try:
                with destination.open_read(key) as stream:
                    while chunk := stream.read(READ_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
            except FileNotFoundError:
                problems.append(f"{entry.path}: listed in the manifest but missing")
                continue
            if size != entry.bytes:
                problems.append(f"{entry.path}: {size} bytes, manifest says {entry.bytes}")
            if digest.hexdigest() != entry.sha256:
                problems.append(f"{entry.path}: sha256 differs from the manifest")
            try:
                with destination.open_read(key) as stream:
                    rows = count_rows(manifest.format, manifest.compression, stream)  # type: ignore[arg-type]
            except ValueError as exc:
                problems.append(f"{entry.path}: does not parse as {manifest.format}: {exc}")
                continue
            if rows != entry.rows:
                problems.append(f"{entry.path}: {rows} rows, manifest says {entry.rows}")
        return AssetCheckResult(
            passed=not problems,
            metadata={
                "files": MetadataValue.int(len(manifest.files)),
                "rows": MetadataValue.int(manifest.total_rows),
                "problems": MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
            },
        )

    return export_is_intact
