"""What an asset hands the IO manager: a stream of record batches and how to write them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import pyarrow as pa
from dagster import Config
from pydantic import Field

Format = Literal["csv"]
Compression = Literal["gzip", "none"]
CredentialPolicy = Literal["redact"]


@dataclass(frozen=True)
class ExportOptions:
    """How one export is written: file format, outer codec and the credential policy."""

    format: Format = "csv"
    compression: Compression = "gzip"
    gzip_level: int = 6
    credential_policy: CredentialPolicy = "redact"


class ExportConfig(Config):
    """Options every export asset takes in its run config (shown in the launchpad)."""

    format: Format = Field(default="csv", description="File format of the export.")
    compression: Compression = Field(
        default="gzip", description="Outer codec: gzip (reproducible, mtime 0) or none."
    )
    gzip_level: int = Field(default=6, ge=1, le=9, description="gzip level, 1 (fast) to 9.")

    def options(self) -> ExportOptions:
        """The write options this config selects."""
        return ExportOptions(
            format=self.format, compression=self.compression, gzip_level=self.gzip_level
        )


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
    ) -> None:
        self.schema = schema
        self.batches = batches
        self.options = options
        self.source = dict(source)
        self._close = close

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
    ) -> None:  # fmt: skip
        self.close()
