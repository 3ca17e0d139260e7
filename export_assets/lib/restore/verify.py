"""Finding and proving an export before restore touches anything: manifest, sha256, chain."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import zstandard

from export_assets.lib.exports.export import Compression
from export_assets.lib.exports.manifest import (
    MANIFEST_NAME,
    MANIFEST_VERSION,
    PARTITION_FOLDER_PREFIX,
    ExportManifest,
    ManifestError,
    file_stem,
)
from export_assets.lib.exports.readers import decompressed
from export_assets.lib.security.crypto import (
    REFERENCE_PATTERN,
    CredentialKeyError,
    ExportCipher,
    export_cipher_for_reading,
    resolve_reference,
)

_CHUNK = 1 << 20
# What a damaged compressed stream raises while it is read.
DECOMPRESSION_ERRORS: tuple[type[Exception], ...] = (
    gzip.BadGzipFile,
    EOFError,
    zlib.error,
    zstandard.ZstdError,
    zipfile.BadZipFile,
)
_DAMAGED_STREAM: tuple[type[Exception], ...] = (*DECOMPRESSION_ERRORS, ValueError)


class RestoreError(Exception):
    """An export cannot be restored, or the target cannot take it; nothing was changed."""


@dataclass(frozen=True)
class VerifiedExport:
    """An export whose manifest was found and whose files match it byte for byte."""

    folder: Path
    manifest: ExportManifest
    data_file: Path

    @contextmanager
    def open_plain(self) -> Iterator[BinaryIO]:
        """The data file, decompressed."""
        compression = self.manifest.compression
        try:
            with (
                self.data_file.open("rb") as raw,
                decompressed(cast(Compression, compression), raw, str(self.data_file)) as plain,
            ):
                yield plain
        except _DAMAGED_STREAM as exc:
            raise RestoreError(
                f"{self.data_file} does not decompress as {compression} ({exc}): the file is "
                "damaged; restore from an intact copy"
            ) from exc


def verify_export(path: Path, asset: str, formats: tuple[str, ...]) -> VerifiedExport:
    """Find the manifest of ``path`` (a partition folder, its manifest or its data file) and
    prove the export: version, asset, format, every file's bytes and sha256, the chain link."""
    path = Path(path)
    if not path.exists():
        raise RestoreError(f"{path} does not exist: give the export's dt=YYYY-MM-DD folder")
    folder = path if path.is_dir() else path.parent
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise RestoreError(
            f"no {MANIFEST_NAME} in {folder}: restore proves an export against its manifest "
            "before using it; copy the whole dt=YYYY-MM-DD folder, manifest included"
        )
    data = manifest_path.read_bytes()
    manifest = _parse_manifest(manifest_path, data)
    if file_stem(manifest.asset) != asset:  # backup/proxy_list is a proxy_list export
        raise RestoreError(
            f"{manifest_path} is the manifest of a {manifest.asset} export, not {asset}: give "
            f"a {asset} export"
        )
    if manifest.format not in formats:
        raise RestoreError(
            f"{folder} is a {manifest.format} export, which restore cannot read back (it "
            f"reads {', '.join(formats)}): export {asset} in one of those"
            + (" (a txt export holds the URLs only)" if manifest.format == "txt" else "")
        )
    listed = {entry.path for entry in manifest.files}
    if not path.is_dir() and path != manifest_path and path.name not in listed:
        raise RestoreError(f"{path.name} is not listed in {manifest_path}: is it from this export?")
    if len(manifest.files) != 1:
        raise RestoreError(f"{manifest_path} lists {len(manifest.files)} files; expected one")
    for entry in manifest.files:
        _verify_file(folder / entry.path, entry.bytes, entry.sha256, manifest_path)
    _verify_chain(folder, manifest, manifest_path)
    return VerifiedExport(folder, manifest, folder / manifest.files[0].path)


def _parse_manifest(path: Path, data: bytes) -> ExportManifest:
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RestoreError(f"{path} is not a JSON manifest ({exc}): the file is damaged") from exc
    if not isinstance(raw, dict):
        raise RestoreError(f"{path} is not a manifest (a JSON object is expected)")
    version = raw.get("manifest_version")
    if version != MANIFEST_VERSION:
        raise RestoreError(
            f"{path} has manifest version {version!r}; this export_assets reads version "
            f"{MANIFEST_VERSION}: restore with the export_assets version that wrote it"
        )
    try:
        return ExportManifest.from_json(data, where=str(path))
    except ManifestError as exc:
        raise RestoreError(str(exc)) from None
    except (TypeError, KeyError, ValueError) as exc:
        raise RestoreError(
            f"{path} is not a valid version {MANIFEST_VERSION} manifest: {exc}"
        ) from exc


def _verify_file(path: Path, size: int, sha256: str, manifest_path: Path) -> None:
    # The name was checked when the manifest was parsed (a plain file name); a symlink that
    # leads out of the export's folder is refused too: restore reads only the export.
    folder = path.parent.resolve()
    if path.is_symlink() and path.resolve().parent != folder:
        raise RestoreError(
            f"{path.name} (listed in {manifest_path}) is a symlink to {path.resolve()}, "
            f"outside {folder}: restore reads only the export's own files; replace the link "
            "with the file"
        )
    if not path.is_file():
        raise RestoreError(
            f"{path.name} is listed in {manifest_path} but missing from {path.parent}"
        )
    digest = hashlib.sha256()
    actual = 0
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
            actual += len(chunk)
    if actual != size or digest.hexdigest() != sha256:
        raise RestoreError(
            f"{path} does not match its manifest ({actual:,} bytes, manifest says {size:,}; "
            f"sha256 {'differs' if digest.hexdigest() != sha256 else 'matches'}): the file was "
            "changed or damaged since export; restore from an intact copy"
        )


def _verify_chain(folder: Path, manifest: ExportManifest, manifest_path: Path) -> None:
    previous = manifest.previous_manifest
    if previous is None:
        return
    earlier = folder.parent / f"{PARTITION_FOLDER_PREFIX}{previous.partition}" / MANIFEST_NAME
    if not earlier.is_file():
        return  # a partition copied on its own: nothing to link to
    if hashlib.sha256(earlier.read_bytes()).hexdigest() != previous.sha256:
        raise RestoreError(
            f"the manifest chain is broken: {earlier} is not the manifest {manifest_path} was "
            "chained to (an earlier partition was rewritten or tampered with); re-export, or "
            "restore from an intact copy"
        )


def credential_reader(
    manifest: ExportManifest, environ: Mapping[str, str] | None = None
) -> Callable[[str, str], str]:
    """How to turn an exported credential back into clear text, per the manifest's policy.

    Raises ``RestoreError`` at once when the key or password is missing or wrong.
    """
    env = os.environ if environ is None else environ
    policy = manifest.credential_policy
    try:
        if policy == "encrypt":
            if not manifest.encryption:
                raise RestoreError(
                    "the manifest says credentials are encrypted but records no key id: the "
                    "manifest is damaged"
                )
            cipher: ExportCipher = export_cipher_for_reading(manifest.encryption, env)
            return cipher.decrypt
    except CredentialKeyError as exc:
        raise RestoreError(str(exc)) from None
    if policy == "reference":
        return lambda value, where: resolve_reference(value, env)
    if policy == "redact":
        return _redacted
    raise RestoreError(f"unknown credential policy {policy!r} in the manifest")


def _redacted(value: str, where: str) -> str:
    raise RestoreError(f"{where}: a redacted export holds no credentials to restore")


def check_references(values: list[Any], environ: Mapping[str, str] | None = None) -> None:
    """Name every placeholder variable that is unset, all at once (never a value)."""
    env = os.environ if environ is None else environ
    missing = sorted(
        {
            match.group(1)
            for value in values
            if isinstance(value, str)
            and (match := REFERENCE_PATTERN.match(value)) is not None
            and match.group(1) not in env
        }
    )
    if missing:
        shown = ", ".join(missing[:10]) + (
            f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        )
        raise RestoreError(
            f"{len(missing)} credential variable(s) are not set: {shown}. A reference export's "
            "credentials come from the environment at restore time: set them, then retry"
        )


def decode_credentials(
    rows: list[dict[str, Any]], keys: tuple[str, ...], read: Callable[[str, str], str], label: str
) -> None:
    """Replace each row's exported credentials with clear text (in place)."""
    try:
        for row in rows:
            for key in keys:
                value = row.get(key)
                if isinstance(value, str):
                    row[key] = read(value, f"{key} of {row.get(label)}")
    except CredentialKeyError as exc:
        raise RestoreError(str(exc)) from None
