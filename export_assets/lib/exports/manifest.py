"""The manifest: the last file of a partition, the one that makes it exist for readers."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import date
from importlib.metadata import version
from typing import Any

import pyarrow as pa

from export_assets.lib.exports.destinations import Destination, UnsafePathError, check_file_name

MANIFEST_VERSION = 1
MANIFEST_NAME = "_manifest.json"
PARTITION_FOLDER_PREFIX = "dt="
_ASSET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A folder above an asset's own: a template's key prefix or a request's name.
_PREFIX_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
_PARTITION_KEY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
MAX_PATH_DEPTH = 3
"""An export's folder is at most ``requests/{request}/{asset}`` deep."""


class ManifestError(ValueError):
    """A manifest is damaged or was tampered with; nothing it names was read or deleted."""


def is_asset_name(asset: object) -> bool:
    """Whether ``asset`` names an export's folder: an identifier (``proxy_list``), under at
    most two prefixes (``backup/proxy_list``, ``requests/us-only/proxy_list``)."""
    if not isinstance(asset, str):
        return False
    *prefixes, name = asset.split("/")
    return (
        len(prefixes) < MAX_PATH_DEPTH
        and _ASSET_NAME.fullmatch(name) is not None
        and all(_PREFIX_NAME.fullmatch(prefix) for prefix in prefixes)
    )


def is_prefix_name(name: object) -> bool:
    """Whether ``name`` may be a folder above an asset's (a key prefix, a request name)."""
    return isinstance(name, str) and _PREFIX_NAME.fullmatch(name) is not None


def check_asset_name(asset: object) -> str:
    """``asset`` if it names an export's folder (see ``is_asset_name``), else
    ``UnsafePathError``."""
    if not is_asset_name(asset):
        raise UnsafePathError(
            f"asset name {asset!r} is refused: an asset name is an identifier (letters, digits "
            "and '_', not starting with a digit), under at most two prefixes of letters, "
            "digits, '_' and '-' (backup/proxy_list, requests/us-only/proxy_list)"
        )
    assert isinstance(asset, str)
    return asset


def file_stem(asset: str) -> str:
    """The asset's own name, which its data files carry: ``proxy_list`` of
    ``backup/proxy_list``."""
    return asset.rsplit("/", 1)[-1]


def is_partition_key(partition: object) -> bool:
    """Whether ``partition`` is a UTC day written ``YYYY-MM-DD``."""
    if not isinstance(partition, str) or not _PARTITION_KEY.fullmatch(partition):
        return False
    try:
        date.fromisoformat(partition)
    except ValueError:
        return False
    return True


def check_partition(partition: object) -> str:
    """``partition`` if it is a ``YYYY-MM-DD`` day, else ``UnsafePathError``."""
    if not is_partition_key(partition):
        raise UnsafePathError(
            f"partition key {partition!r} is refused: partitions are UTC days written "
            "YYYY-MM-DD, e.g. 2026-11-20"
        )
    assert isinstance(partition, str)
    return partition


def partition_folder(asset: str, partition: str) -> str:
    """``{asset}/dt={partition}``: Hive-style, so query engines see one partitioned table."""
    return f"{check_asset_name(asset)}/{PARTITION_FOLDER_PREFIX}{check_partition(partition)}"


def manifest_key(asset: str, partition: str) -> str:
    """Key of a partition's manifest."""
    return f"{partition_folder(asset, partition)}/{MANIFEST_NAME}"


def data_file_name(asset: str, partition: str, extension: str) -> str:
    """``{name}-{partition}{extension}``, e.g. ``proxy_list-2026-11-01.csv.gz`` (also in
    ``backup/proxy_list``)."""
    return f"{file_stem(asset)}-{partition}{extension}"


def export_folders(destination: Destination) -> tuple[dict[str, list[str]], list[str]]:
    """The folders holding an asset's partitions, each with its ``dt=`` folders, from the
    destination's root down to ``MAX_PATH_DEPTH``; and the folders that could not be
    listed, with why.

    Anything not named as an export's folder is never entered.
    """
    found: dict[str, list[str]] = {}
    skipped: list[str] = []
    level = [""]
    for _ in range(MAX_PATH_DEPTH + 1):  # the last level lists the deepest assets' days
        deeper = []
        for parent in level:
            try:
                children = destination.list_folders(parent)
            except UnsafePathError as exc:
                skipped.append(f"{parent}: {exc}")
                continue
            days = [child for child in children if child.startswith(PARTITION_FOLDER_PREFIX)]
            if days and parent and is_asset_name(parent):
                found[parent] = days
            deeper += [
                f"{parent}/{child}" if parent else child
                for child in children
                if is_prefix_name(child)
            ]
        level = deeper
    return dict(sorted(found.items())), skipped


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
    def from_json(cls, data: bytes, where: str = MANIFEST_NAME) -> ExportManifest:
        """Parse a published manifest (``where`` names it in errors).

        Every path it holds is data, never trusted: a file name with a separator, ``..``,
        a backslash, NUL or a leading '.', an asset that is not an identifier or a
        partition that is not a day is refused (``ManifestError``) before anything uses it.
        """
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ManifestError(f"{where} is not a manifest (a JSON object is expected)")
        if raw.get("manifest_version") != MANIFEST_VERSION:
            raise ValueError(
                f"manifest version {raw.get('manifest_version')!r} is not {MANIFEST_VERSION}"
            )
        previous = raw.pop("previous_manifest")
        entries = raw.pop("files")
        if not isinstance(entries, list):
            raise ManifestError(f"{where}: 'files' is not a list")
        files = [ManifestFile(**entry) for entry in entries]
        manifest = cls(
            files=files,
            previous_manifest=PreviousManifest(**previous) if previous else None,
            **raw,
        )
        manifest.check_paths(where)
        return manifest

    def check_paths(self, where: str = MANIFEST_NAME) -> None:
        """Refuse a manifest whose asset, partition or file names could lead elsewhere."""
        try:
            check_asset_name(self.asset)
            check_partition(self.partition)
            if self.previous_manifest is not None:
                check_partition(self.previous_manifest.partition)
            for index, entry in enumerate(self.files):
                check_file_name(entry.path, f"files[{index}].path")
                if entry.path == MANIFEST_NAME:
                    raise UnsafePathError(
                        f"files[{index}].path {entry.path!r} is refused: a manifest cannot "
                        "list itself as data"
                    )
        except UnsafePathError as exc:
            raise ManifestError(
                f"{where} is refused: {exc}. The manifest was tampered with or damaged; "
                "nothing it lists was read or deleted: inspect it, then remove it (or restore "
                "it from a good copy) and export the partition again"
            ) from None


def columns_of(schema: pa.Schema) -> list[dict[str, Any]]:
    """The column schema recorded in a manifest."""
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
