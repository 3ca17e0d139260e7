"""The manifest: the last file of a partition, the one that makes it exist for readers."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from typing import Any

import pyarrow as pa

MANIFEST_VERSION = 1
MANIFEST_NAME = "_manifest.json"
PARTITION_FOLDER_PREFIX = "dt="


def partition_folder(asset: str, partition: str) -> str:
    """``{asset}/dt={partition}``: Hive-style, so query engines see one partitioned table."""
    return f"{asset}/{PARTITION_FOLDER_PREFIX}{partition}"


def manifest_key(asset: str, partition: str) -> str:
    """Key of a partition's manifest."""
    return f"{partition_folder(asset, partition)}/{MANIFEST_NAME}"


def data_file_name(asset: str, partition: str, extension: str) -> str:
    """``{asset}-{partition}{extension}``, e.g. ``proxy_list-2026-11-01.csv.gz``."""
    return f"{asset}-{partition}{extension}"


@dataclass(frozen=True)
class ManifestFile:
    """One data file of a partition; ``path`` is relative to the partition folder."""

    path: str
    bytes: int
    sha256: str
    rows: int


@dataclass(frozen=True)
class PreviousManifest:
    """The link of the hash chain: the nearest earlier partition's manifest."""

    partition: str
    sha256: str


@dataclass(frozen=True)
class ExportManifest:
    """Everything a reader, verifier or auditor needs to trust a partition."""

    asset: str
    partition: str
    run_id: str
    created_at: str
    format: str
    compression: str
    files: list[ManifestFile]
    total_rows: int
    columns: list[dict[str, Any]]
    source: dict[str, Any]
    credential_policy: str
    previous_manifest: PreviousManifest | None
    tool_version: str = field(default_factory=lambda: version("export_assets"))
    manifest_version: int = MANIFEST_VERSION
    # Under the ``encrypt`` credential policy: cipher, key id (a fingerprint) and the KDF's
    # parameters and salt when the key came from a password. Never the key itself.
    encryption: dict[str, Any] | None = None

    def to_json(self) -> bytes:
        """The manifest's bytes as published (UTF-8 JSON, stable field order)."""
        return (json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> ExportManifest:
        """Parse a published manifest."""
        raw = json.loads(data)
        if raw.get("manifest_version") != MANIFEST_VERSION:
            raise ValueError(
                f"manifest version {raw.get('manifest_version')!r} is not {MANIFEST_VERSION}"
            )
        previous = raw.pop("previous_manifest")
        files = [ManifestFile(**entry) for entry in raw.pop("files")]
        return cls(
            files=files,
            previous_manifest=PreviousManifest(**previous) if previous else None,
            **raw,
        )


def columns_of(schema: pa.Schema) -> list[dict[str, Any]]:
    """The column schema recorded in a manifest."""
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
