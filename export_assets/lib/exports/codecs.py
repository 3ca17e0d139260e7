"""Outer codecs: how a data file's bytes are compressed on their way to the destination.

Every codec is reproducible: the same data gives the same bytes (no time, file name or
host in a header) and streams (no seeking back, so S3 multipart uploads work).

gzip is compressed block-parallel, as pigz does: the stream is cut into fixed blocks of
``GZIP_BLOCK_BYTES``, each deflated at the export's ``gzip_level`` on a pool of threads,
primed with the previous block's last 32 KiB as its dictionary and ended with a sync
flush, and the results are written in order: one standard gzip member (mtime 0, no name,
OS "unknown") that every gzip reader opens. The deflater is zlib-ng (``zlib_ng``), which
keeps zlib's 1-9 level scale and ratio (level 6: 75.5% on the sample's CSV, as ``gzip -6``)
at about twice zlib's speed, and releases the GIL, so compression runs on the other cores
while this one formats. The bytes depend only on the data, the level, the block size and
the zlib-ng version, never on the number of threads or their timing. ISA-L (``isal``)
computes the CRC but does not deflate: its levels 0-3 top out near zlib's level 4 (73.8%
on the same CSV), so it could not honour level 6.
"""

from __future__ import annotations

import os
import struct
import zipfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import BinaryIO, Protocol, cast

import zstandard
from isal import isal_zlib
from zlib_ng import zlib_ng

from export_assets.lib.exports.export import Compression

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


GZIP_BLOCK_BYTES = 256 * 1024
"""Bytes of data per independently deflated gzip block (part of what fixes the output)."""
GZIP_THREADS = max(1, min(4, os.cpu_count() or 1))
"""Threads deflating gzip blocks; the output does not depend on it."""
_DEFLATE_WINDOW = 32 * 1024
# ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=255 (unknown): nothing about the run or host.
_GZIP_HEADER = bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 255])
_FINAL_EMPTY_BLOCK = b"\x03\x00"  # a last (BFINAL) fixed-Huffman block holding nothing


def _deflate_block(data: bytes, dictionary: bytes, level: int) -> tuple[bytes, int]:
    """``data`` as raw deflate ending in a sync flush (byte-aligned, not final), and its CRC."""
    compressor = (
        zlib_ng.compressobj(level, zlib_ng.DEFLATED, -zlib_ng.MAX_WBITS, zdict=dictionary)
        if dictionary
        else zlib_ng.compressobj(level, zlib_ng.DEFLATED, -zlib_ng.MAX_WBITS)
    )
    deflated = compressor.compress(data) + compressor.flush(zlib_ng.Z_SYNC_FLUSH)
    return deflated, isal_zlib.crc32(data)


class ParallelGzipWriter:
    """A gzip stream into ``target``, deflated block-parallel (see the module doc).

    Write, then ``close`` to write the last block and the trailer; ``abort`` stops the
    threads and writes nothing more. Blocks are written to ``target`` from the calling
    thread, at most ``2 * threads`` blocks in flight.
    """

    def __init__(
        self, target: WriteStream, level: int, *, threads: int = GZIP_THREADS,
        block_bytes: int = GZIP_BLOCK_BYTES,
    ) -> None:
        if not 0 <= level <= 9:
            raise ValueError(f"gzip level {level} is not in 0-9")
        self._target = target
        self._level = level
        self._block_bytes = block_bytes
        self._pending = bytearray()
        self._dictionary = b""
        self._crc = 0
        self._size = 0
        self._depth = 2 * threads
        self._in_flight: deque[tuple[Future[tuple[bytes, int]], int]] = deque()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="gzip")
        self._closed = False
        target.write(_GZIP_HEADER)

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        view = memoryview(data).cast("B")
        self._pending += view
        if len(self._pending) >= self._block_bytes:
            whole = len(self._pending) - len(self._pending) % self._block_bytes
            with memoryview(self._pending) as pending:  # one copy per block, not two
                blocks = [
                    bytes(pending[start : start + self._block_bytes])
                    for start in range(0, whole, self._block_bytes)
                ]
            del self._pending[:whole]
            for block in blocks:
                self._submit(block)
        return view.nbytes

    def flush(self) -> None:
        """Nothing to do: blocks are cut by size only, so that the bytes never depend on
        when a writer flushed."""

    def _submit(self, block: bytes) -> None:
        future = self._pool.submit(_deflate_block, block, self._dictionary, self._level)
        self._in_flight.append((future, len(block)))
        self._dictionary = block[-_DEFLATE_WINDOW:]
        while len(self._in_flight) > self._depth:
            self._write_oldest()

    def _write_oldest(self) -> None:
        future, length = self._in_flight.popleft()
        deflated, crc = future.result()
        self._crc = isal_zlib.crc32_combine(self._crc, crc, length)
        self._size += length
        self._target.write(deflated)

    def close(self) -> None:
        """Write what is pending, the final block and the trailer (CRC-32, size mod 2^32)."""
        if self._closed:
            return
        try:
            if self._pending:
                self._submit(bytes(self._pending))
                self._pending.clear()
            while self._in_flight:
                self._write_oldest()
            self._target.write(_FINAL_EMPTY_BLOCK)
            self._target.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        finally:
            self.abort()

    def abort(self) -> None:
        """Stop the threads; nothing more is written."""
        self._closed = True
        for future, _ in self._in_flight:
            future.cancel()
        self._in_flight.clear()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> ParallelGzipWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:
            with suppress(Exception):
                self.abort()


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
        with ParallelGzipWriter(target, options.gzip_level) as stream:
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
