"""Bounded decompression of compressed log files: gzip, bz2, xz, zip and tar members,
inflated in small steps against ``LogLimits``.

Past ``max_decompressed_bytes``, or past ``max_compression_ratio`` times the compressed
bytes the decompressor has actually used (from ``RATIO_FLOOR_BYTES`` on), reading stops
with ``InflationRefused``: the caller refuses the file whole, the records read before the
limit included, since a bomb can carry forged records, and a genuine file that large is
exported by raising the limit the refusal names. Compressed bytes are handed to a
decompressor in pieces of ``_PIECE`` bytes and its output taken in bounded chunks, so the
limits are checked before a bomb's first megabyte is used. Gzip and zip members are
inflated by zlib directly (the standard readers read ahead of use, which would blur a
bomb's ratio) and checked against their CRC and size.
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Protocol, cast

from export_assets.lib.source.log_files import (
    Kind,
    LogFile,
    RefusalReason,
    RefusedLogFile,
    tar_codec,
)

DEFAULT_MAX_DECOMPRESSED_BYTES = 1 << 30
"""A compressed log file inflating to more than this (1 GiB) is refused."""

DEFAULT_MAX_COMPRESSION_RATIO = 500.0
"""A compressed log file inflating to more than this many times the compressed bytes read
is refused. Loguru JSON logs compress 10-20x (gzip to xz); a flood of one message repeated
reaches ~75x in gzip, ~200x in bz2 and ~380x in xz. Deflate cannot exceed ~1032x, so every
gzip or zip bomb is caught by the ratio long before it reaches the size limit."""

RATIO_FLOOR_BYTES = 64 * 1024
"""A file is never refused for its ratio before it has inflated to this much."""

READ_ERRORS = (
    OSError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    zipfile.BadZipFile,
    tarfile.TarError,
    NotImplementedError,
    RuntimeError,
)
"""Errors of a compressed file that does not decompress (truncated, corrupt, encrypted)."""

# Compressed bytes are handed to a decompressor in small pieces, and decompressed bytes
# taken in chunks, so that the limits are checked before a bomb's first megabyte is parsed.
_PIECE = 256
_ZIP_METHODS = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
_INFLATE_CHUNK = 64 * 1024


@dataclass(frozen=True)
class LogLimits:
    """How far one compressed log file may inflate before it is refused as a bomb."""

    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES
    max_compression_ratio: float = DEFAULT_MAX_COMPRESSION_RATIO

    def facts(self) -> dict[str, Any]:
        """The limits for the manifest."""
        return {
            "max_decompressed_bytes": self.max_decompressed_bytes,
            "max_compression_ratio": self.max_compression_ratio,
        }


class InflationRefused(Exception):
    """A compressed log file inflated past a limit; carries the refusal."""

    def __init__(self, refusal: RefusedLogFile) -> None:
        super().__init__(refusal.why)
        self.refusal = refusal


def inflated_members(file: LogFile, limits: LogLimits) -> Iterator[io.BufferedReader]:
    """The decompressed members of a compressed ``file`` (one for gzip, bz2 and xz), read
    from where ``file.raw`` stands, each with ``readline``. Reading raises one of
    ``READ_ERRORS`` where the file does not decompress, ``InflationRefused`` past ``limits``."""
    metered = _MeteredFile(file.raw)
    if file.kind == "zip":
        yield from _zip_members(file, limits, metered)
    elif file.kind == "tar":
        yield from _tar_members(file, limits, metered)
    else:
        yield _counted(_inflating(file.kind, metered), file, limits, metered)


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _MeteredFile(io.RawIOBase):
    """A compressed file, counting the bytes read from it. Reads give at most ``_PIECE``
    bytes unless ``whole`` (zip directories are parsed from whole reads): a decompressor
    then holds little input it has not used."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self.bytes_read = 0
        self.whole = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET, /) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readinto(self, buffer: Any, /) -> int:
        data = self._raw.read(len(buffer) if self.whole else min(len(buffer), _PIECE))
        buffer[: len(data)] = data
        self.bytes_read += len(data)
        return len(data)


class _Inflating(Protocol):
    """A decompressed stream that says how many compressed bytes it read but has not used."""

    @property
    def held(self) -> int: ...

    def read(self, size: int = -1, /) -> bytes: ...


class _GzipMembers:
    """A gzip file's members one after the other, inflated by zlib (which checks each
    member's CRC and size) from pieces of the file. ``gzip.GzipFile`` would do, but it
    tops its input up to 8 KiB ahead of use, which would blur a bomb's ratio."""

    def __init__(self, metered: _MeteredFile) -> None:
        self._in = metered
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._input = b""
        self._member_read = False  # whether the current member has begun

    @property
    def held(self) -> int:
        return len(self._input)

    def read(self, size: int = -1, /) -> bytes:
        size = size if size > 0 else _INFLATE_CHUNK
        while True:
            if self._inflater.eof:  # another member may follow, after zero padding
                self._input = self._input.lstrip(b"\0")
                while not self._input:
                    piece = self._in.read(_PIECE)
                    if not piece:
                        return b""
                    self._input = piece.lstrip(b"\0")
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            if not self._input:
                self._input = self._in.read(_PIECE)
                if not self._input:
                    if not self._member_read:
                        return b""  # an empty file, as GzipFile reads it
                    raise EOFError("compressed file ended before the end of its gzip stream")
            self._member_read = True
            data = self._inflater.decompress(self._input, size)
            eof = self._inflater.eof
            self._input = self._inflater.unused_data if eof else self._inflater.unconsumed_tail
            if data:
                return data


class _ZipMember:
    """One stored or deflated member of a zip file, inflated by zlib from pieces of the
    file and checked against its CRC and size (``ZipFile.open`` reads ahead of use)."""

    def __init__(self, metered: _MeteredFile, info: zipfile.ZipInfo) -> None:
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            # Loguru writes deflate; bzip2 and lzma members inflate unbounded in zipfile.
            raise NotImplementedError(
                f"member {info.filename!r} is compressed with "
                f"{_ZIP_METHODS.get(info.compress_type, f'method {info.compress_type}')}: only "
                "stored and deflated members are read"
            )
        if info.flag_bits & 0x1:
            raise RuntimeError(f"member {info.filename!r} is encrypted")
        metered.whole = True
        metered.seek(info.header_offset)
        header = metered.read(30)
        metered.whole = False
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"member {info.filename!r} has no local header")
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        metered.seek(info.header_offset + 30 + name_length + extra_length)
        self._in = metered
        self._info = info
        self._left = info.compress_size
        deflated = info.compress_type == zipfile.ZIP_DEFLATED
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS) if deflated else None
        self._input = b""
        self._crc = 0
        self._size = 0

    @property
    def held(self) -> int:
        return len(self._input)

    def read(self, size: int = -1, /) -> bytes:
        size = size if size > 0 else _INFLATE_CHUNK
        while True:
            if not self._input and self._left:
                self._input = self._in.read(min(_PIECE, self._left))
                if not self._input:
                    raise EOFError(f"member {self._info.filename!r} is cut short")
                self._left -= len(self._input)
            if self._inflater is None:
                data, self._input = self._input[:size], self._input[size:]
            else:
                data = self._inflater.decompress(self._input, size)
                self._input = self._inflater.unconsumed_tail
                if self._inflater.eof:
                    self._input, self._left = b"", 0
            if data:
                self._crc = zlib.crc32(data, self._crc)
                self._size += len(data)
                return data
            if not self._input and not self._left:
                return self._end()

    def _end(self) -> bytes:
        if self._inflater is not None and not self._inflater.eof:
            raise EOFError(f"member {self._info.filename!r} ends inside its deflate stream")
        if self._crc != self._info.CRC or self._size != self._info.file_size:
            raise zipfile.BadZipFile(f"member {self._info.filename!r} fails its CRC or size")
        return b""


class _NothingHeld:
    """A reader that takes input only when it needs it (bz2, xz, a plain tar): it holds at
    most one unused piece, counted as used."""

    held = 0

    def __init__(self, stream: _Readable) -> None:
        self._stream = stream

    def read(self, size: int = -1, /) -> bytes:
        return self._stream.read(size)


class _Inflation:
    """What one decompressing layer of a file has given, against the compressed bytes it
    has used: past a limit the file is refused, before these bytes are used."""

    def __init__(
        self, file: LogFile, limits: LogLimits, metered: _MeteredFile, held: Callable[[], int]
    ) -> None:
        self._file = file
        self._limits = limits
        self._metered = metered
        self._held = held
        self.bytes_out = 0

    def count(self, size: int) -> None:
        """Add ``size`` bytes given; ``InflationRefused`` past a limit."""
        self.bytes_out += size
        limits = self._limits
        # Never more than the file's size: zip entries can share their compressed data.
        used = max(1, min(self._metered.bytes_read - self._held(), self._file.size))
        if self.bytes_out > limits.max_decompressed_bytes:
            why = (
                f"inflates to more than max_decompressed_bytes ({limits.max_decompressed_bytes} "
                f"bytes; reading stopped after {used} compressed bytes)"
            )
            raise InflationRefused(self._refusal("too_large", why, "max_decompressed_bytes"))
        ratio = self.bytes_out / used
        if self.bytes_out > RATIO_FLOOR_BYTES and ratio > limits.max_compression_ratio:
            why = (
                f"a decompression bomb: {used} compressed bytes inflated to {self.bytes_out} "
                f"bytes ({ratio:.2f}x, more than max_compression_ratio "
                f"{limits.max_compression_ratio:g}x; reading stopped there)"
            )
            raise InflationRefused(self._refusal("ratio", why, "max_compression_ratio"))

    def _refusal(self, reason: RefusalReason, why: str, limit: str) -> RefusedLogFile:
        return RefusedLogFile(
            self._file.path.name,
            reason,
            f"{why}: the whole file is left out, none of its records are exported",
            f"if it is a genuine ProxyWhirl log, raise {limit} (proxy_logs run config) and "
            "export the partition again",
        )


class _Bounded(io.RawIOBase):
    """A decompressed stream whose bytes an ``_Inflation`` counts before they are used."""

    def __init__(self, stream: _Readable, inflation: _Inflation) -> None:
        super().__init__()
        self._stream = stream
        self._inflation = inflation

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any, /) -> int:
        # Bounded reads: a decompressor asked for n bytes holds n bytes before we count them.
        data = self._stream.read(min(len(buffer), _INFLATE_CHUNK))
        self._inflation.count(len(data))
        buffer[: len(data)] = data
        return len(data)


def _bounded(stream: _Readable, inflation: _Inflation) -> io.BufferedReader:
    """``stream``, counted by ``inflation``, with ``readline``."""
    return io.BufferedReader(_Bounded(stream, inflation), _INFLATE_CHUNK)


def _counted(
    stream: _Inflating, file: LogFile, limits: LogLimits, metered: _MeteredFile
) -> io.BufferedReader:
    """``stream``, counted by an ``_Inflation`` of its own, with ``readline``."""
    return _bounded(stream, _Inflation(file, limits, metered, lambda: stream.held))


def _inflating(kind: Kind, metered: _MeteredFile) -> _Inflating:
    if kind == "gzip":
        return _GzipMembers(metered)
    if kind == "bz2":
        return _NothingHeld(bz2.BZ2File(metered, "rb"))
    return _NothingHeld(lzma.LZMAFile(cast(IO[bytes], metered), "rb"))


def _zip_members(
    file: LogFile, limits: LogLimits, metered: _MeteredFile
) -> Iterator[io.BufferedReader]:
    metered.whole = True
    with zipfile.ZipFile(cast(IO[bytes], metered)) as archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
    current: list[_ZipMember] = []
    # All members together: a zip can hold many small bombs, or entries sharing one.
    members = _Inflation(file, limits, metered, lambda: current[-1].held if current else 0)
    for info in infos:
        current[:] = [_ZipMember(metered, info)]
        yield _bounded(current[-1], members)


def _tar_members(
    file: LogFile, limits: LogLimits, metered: _MeteredFile
) -> Iterator[io.BufferedReader]:
    codec = tar_codec(file.path.name)
    stream = (
        _NothingHeld(io.BufferedReader(metered, _PIECE))
        if codec == "plain"
        else _inflating(codec, metered)
    )
    # Two counts: the tar stream (headers too: a pax header can be huge) and the members'
    # bytes (a sparse member's holes are made up, not read).
    members = _Inflation(file, limits, metered, lambda: stream.held)
    with tarfile.open(fileobj=_counted(stream, file, limits, metered), mode="r|") as archive:
        for entry in archive:
            extracted = archive.extractfile(entry) if entry.isfile() else None
            if extracted is not None:
                with extracted:
                    yield _bounded(extracted, members)
