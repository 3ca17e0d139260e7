"""What an asset hands the IO manager: a stream of record batches and how to write them.

Plain data, no Dagster: the run config that selects these options is
``export_assets.defs.exports.config``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, Literal

import pyarrow as pa

Format = Literal["csv", "jsonl", "json", "txt", "parquet", "xlsx"]
Compression = Literal["none", "gzip", "zstd", "zip"]
# The run config's choice: "auto" is the format's default codec. A Literal, not an optional
# enum: Dagster names a Literal's config type after its values, so the launchpad's
# "not in enum type Literal['auto', 'none', ...] got ..." lists the valid ones.
CompressionSetting = Literal["auto", "none", "gzip", "zstd", "zip"]
ParquetCompression = Literal["zstd", "snappy", "gzip", "none"]
CredentialPolicy = Literal["redact", "encrypt", "reference"]

INTERNALLY_COMPRESSED: frozenset[Format] = frozenset({"parquet", "xlsx"})
"""Formats that compress inside the file: an outer codec would only cost time."""

_INTERNAL_CODEC_SETTING: dict[Format, str] = {
    "parquet": "parquet_compression",
    "xlsx": "an xlsx file is a zip archive",
}


class CompressionChoice(StrEnum):
    """``Compression`` as an enum, for code that iterates the codecs."""

    none = "none"
    gzip = "gzip"
    zstd = "zstd"
    zip = "zip"


def default_compression(format: Format) -> Compression:
    """The outer codec a format gets when none is asked for: gzip, or none if internal."""
    return "none" if format in INTERNALLY_COMPRESSED else "gzip"


def check_compression(format: Format, compression: Compression) -> None:
    """Reject an outer codec on a format that compresses internally, saying what to do."""
    if format in INTERNALLY_COMPRESSED and compression != "none":
        raise ValueError(
            f"{format} compresses internally ({_INTERNAL_CODEC_SETTING[format]}); set "
            f"compression to none (or leave it unset), not {compression!r}"
        )


def check_fields(fields: tuple[str, ...] | list[str] | None) -> None:
    """A field selection names at least one column and none twice."""
    if fields is None:
        return
    if not fields:
        raise ValueError("fields is empty: list the columns to export, or leave it unset for all")
    seen: set[str] = set()
    for name in fields:
        if name in seen:
            raise ValueError(f"fields lists {name!r} twice: {list(fields)}")
        seen.add(name)


@dataclass(frozen=True)
class ExportOptions:
    """How one export is written: format, outer codec, format settings, column selection and
    the credential policy. Construction rejects combinations that make no sense."""

    format: Format = "csv"
    compression: Compression = "gzip"
    gzip_level: int = 6
    zstd_level: int = 3
    parquet_compression: ParquetCompression = "zstd"
    neutralize_formulas: bool = True
    fields: tuple[str, ...] | None = None
    credential_policy: CredentialPolicy = "redact"

    def __post_init__(self) -> None:
        check_compression(self.format, self.compression)
        check_fields(self.fields)


@contextmanager
def closed_on_error(close: Callable[[], None]) -> Iterator[None]:
    """Run ``close`` if the block raises; otherwise the resource stays open for its new
    owner (an ``Export``, which closes it once written)."""
    try:
        yield
    except BaseException:
        close()
        raise


class Export:
    """A lazily read export: the IO manager consumes ``batches`` once, then closes it.

    ``source`` holds facts about what was read (watermarks, the moment of a
    point-in-time view) for the manifest. ``close`` releases what the batches read from
    (a source snapshot); it runs whether or not the batches were consumed.
    """

    def __init__(
        self,
        *,
        schema: pa.Schema,
        batches: Iterator[pa.RecordBatch],
        options: ExportOptions,
        source: Mapping[str, Any],
        close: Callable[[], None] | None = None,
        estimated_rows: int | None = None,
        encryption: Mapping[str, Any] | None = None,
    ) -> None:
        self.schema = schema
        self.batches = batches
        self.options = options
        self.source = dict(source)
        self._close = close
        # How many rows the batches will hold, when the source knows cheaply (size guard).
        self.estimated_rows = estimated_rows
        # Key id and KDF of credentials encrypted under the ``encrypt`` policy (never the key).
        self.encryption = None if encryption is None else dict(encryption)

    def close(self) -> None:
        """Release the source the batches read from (idempotent)."""
        close, self._close = self._close, None
        if close is not None:
            close()

    def __enter__(self) -> Export:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


DocumentFormat = Literal["yaml", "json"]


@dataclass(frozen=True)
class DocumentOptions:
    """How a document export (a config, not a table) is written."""

    format: DocumentFormat = "yaml"
    compression: Compression = "none"
    gzip_level: int = 6
    zstd_level: int = 3
    credential_policy: CredentialPolicy = "redact"


@dataclass(frozen=True)
class DocumentExport:
    """One document (JSON-like mapping) to publish as YAML or JSON, with its source facts."""

    document: Mapping[str, Any]
    options: DocumentOptions
    source: Mapping[str, Any]
    encryption: Mapping[str, Any] | None = None  # key id and KDF under ``encrypt``, never the key


RenderedFormat = Literal["pdf", "xlsx"]


@dataclass(frozen=True)
class RenderedOptions:
    """How an already-rendered document (a report) is written: as is, by default."""

    format: RenderedFormat
    compression: Compression = "none"
    gzip_level: int = 6
    zstd_level: int = 3
    credential_policy: CredentialPolicy = "redact"


@dataclass(frozen=True)
class RenderedExport:
    """A binary document an asset rendered itself (a PDF report, a multi-sheet workbook),
    published as is. ``records`` is what ``readers.count_rows`` counts in it: the pages of a
    PDF, the data rows (headers excluded) of every sheet of a workbook."""

    content: bytes
    records: int
    options: RenderedOptions
    source: Mapping[str, Any]
