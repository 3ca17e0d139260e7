"""Outer codecs: how a data file's bytes are compressed on their way to the destination.

Every codec is reproducible: the same data gives the same bytes (no time, file name or
host in a header) and streams (no seeking back, so S3 multipart uploads work).
"""

from __future__ import annotations

import gzip
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, Protocol, cast

import zstandard

from export_assets.exports.export import Compression

EXTENSIONS: dict[Compression, str] = {"none": "", "gzip": ".gz", "zstd": ".zst", "zip": ".zip"}

ZIP_FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
"""The date of every zip entry we write (the earliest zip can hold): no time of the run."""


class WriteStream(Protocol):
    """What the codecs write into: a byte stream that can write and flush."""

    def write(self, data: bytes | bytearray | memoryview, /) -> int | None: ...

    def flush(self) -> None: ...


def zip_entry(
    name: str, compression: int = zipfile.ZIP_DEFLATED, level: int | None = None
) -> zipfile.ZipInfo:
    """A zip entry header that depends on nothing but its arguments (fixed date, unix, 0644)."""
    info = zipfile.ZipInfo(name, date_time=ZIP_FIXED_DATE_TIME)
    info.compress_type = compression
    # ZipFile.open(ZipInfo) takes the level from the entry, not from the archive
    # (the attribute is private before Python 3.13).
    setattr(info, "_compresslevel", level)  # noqa: B010
    info.create_system = 3  # unix, whatever platform writes it
    info.external_attr = 0o644 << 16
    return info


class UnseekableWriter:
    """A write-only view of a stream: zip then streams (data descriptors after each entry)
    and writes the same bytes whether or not the stream underneath could seek."""

    def __init__(self, target: WriteStream) -> None:
        self._target = target

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._target.write(data)
        return memoryview(data).nbytes

    def flush(self) -> None:
        self._target.flush()


class CodecOptions(Protocol):
    """What a codec reads of an export's options (tables and documents alike)."""

    @property
    def compression(self) -> Compression: ...

    @property
    def gzip_level(self) -> int: ...

    @property
    def zstd_level(self) -> int: ...


@contextmanager
def compressed(
    target: WriteStream, options: CodecOptions, *, entry_name: str
) -> Iterator[BinaryIO]:
    """A stream that compresses into ``target``; the codec's trailer is written on exit.

    ``entry_name`` names the data file inside a zip archive (the file name without
    ``.zip``); other codecs ignore it. ``target`` is never closed here.
    """
    if options.compression == "none":
        yield cast(BinaryIO, target)
    elif options.compression == "gzip":
        # mtime=0 and no file name in the header: the same rows give the same bytes.
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=target, compresslevel=options.gzip_level, mtime=0
        ) as stream:
            yield cast(BinaryIO, stream)
    elif options.compression == "zstd":
        # One frame, content size unknown (streamed), no threads: deterministic output.
        compressor = zstandard.ZstdCompressor(level=options.zstd_level, write_checksum=True)
        with compressor.stream_writer(cast(BinaryIO, target), closefd=False) as stream:
            yield cast(BinaryIO, stream)
    elif options.compression == "zip":
        # Deflate at the gzip level. force_zip64: the size is unknown until the end and may
        # pass 4 GiB; every zip reader since 2001 reads zip64 entries.
        with (
            zipfile.ZipFile(
                UnseekableWriter(target),  # type: ignore[call-overload]
                mode="w",
                compression=zipfile.ZIP_DEFLATED,
                compresslevel=options.gzip_level,
                allowZip64=True,
            ) as archive,
            archive.open(
                zip_entry(entry_name, level=options.gzip_level), mode="w", force_zip64=True
            ) as stream,
        ):
            yield cast(BinaryIO, stream)
    else:
        raise ValueError(
            f"unknown compression {options.compression!r}; known: {', '.join(EXTENSIONS)}"
        )
