"""Reading ProxyWhirl's log folder: loguru JSON lines (``serialize=True``), one UTC day at a time.

Every file of the folder whose name is a log file's is read: the live ``NAME.log``, loguru's
rotated ``NAME.<created>.log`` and their compressed forms (``.gz``, ``.bz2``, ``.xz``,
``.lzma``, ``.zip``, ``.tar[.gz|.bz2|.xz]``), logrotate's ``NAME.log.1[.gz]`` too. Files are
streamed line by line (split on ``b"\\n"`` only: messages may hold U+2028 or U+0085, which
``str.splitlines`` would break on), never read whole into memory. While loguru compresses a
rotated file both it and its archive exist: only the (whole) uncompressed one is read.

A day is read in two passes over the same open file descriptors:

1. ``open_log_day`` scans every file: it counts lines, records of the day, malformed lines and
   a partial last line, and measures how far out of time order the day's records of each
   file are (their *lateness*: how much earlier than an already seen record a record is).
2. ``LogDay.rows`` re-reads only the files holding records of the day and merges them with
   ``heapq.merge`` by (time, file name, line number). Loguru writes records in the order
   they were logged, so a file is ordered but for threads and processes racing for the
   sink; a reorder heap per file holds records only until no later line can precede them
   (by the lateness pass 1 measured), so memory is bounded by that window (nothing, for an
   ordered file), not by the size of the day.

Between the passes the live file may grow or be rotated away: the descriptors stay open
and a plain file is re-read only up to the bytes pass 1 saw, and pass 2 checks that it
found exactly the records pass 1 counted (``SourceError`` otherwise: export again).

A line's day is read cheaply from its end, where loguru puts ``"timestamp": N}}}``; only
lines of the day (or whose end does not say) are parsed as JSON. A malformed line (not
UTF-8 JSON, or JSON without loguru's record structure) is counted with its line number,
never with its content, which may hold secrets; a line that says which day it belongs to
is counted in that day's export only. A last line without ``\\n`` that does not parse is a
record still being written: it is counted as partial, not malformed.

Only the flattened ``record`` fields are returned; loguru's ``text`` (where tracebacks and
their variable values, secrets included, are printed) is never read.

Whoever can write to the log folder is trusted with nothing but its log files. Only regular
files are opened, with ``O_NOFOLLOW | O_NONBLOCK`` and checked with ``fstat`` after the
listing's ``lstat``: a symbolic link is never followed, a FIFO, socket, device or directory
with a log file's name never opened (a FIFO would block the open forever), a file gone
between listing and opening (rotated) is counted; all are *refused*, with why and what to
do, never fatal for the other files. A compressed file is inflated in small steps against
``LogLimits``: past ``max_decompressed_bytes``, or past ``max_compression_ratio`` times the
compressed bytes the decompressor has actually used (from ``RATIO_FLOOR_BYTES`` on), reading
stops and the file is refused whole, the records read before the limit included: a bomb can
carry forged records, and a genuine file that large is exported by raising the limit the
refusal names. Plain files are read as they are (their size is their cost on disk).

No file name or modification time is trusted to bound a file's days: loguru names rotated
files after their creation, zip entries keep times to two seconds, logs can be dated in
the future of the file system's clock. Every file is scanned, cheaply, for every day.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import heapq
import io
import json
import lzma
import math
import os
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, Protocol, cast

import pyarrow as pa

from export_assets.source.database import SourceError
from export_assets.source.timestamps import TIMESTAMP_UTC

LEVELS: dict[str, int] = {
    "TRACE": 5,
    "DEBUG": 10,
    "INFO": 20,
    "SUCCESS": 25,
    "WARNING": 30,
    "ERROR": 40,
    "CRITICAL": 50,
}
"""Loguru's standard levels and their numbers."""

LOG_SCHEMA = pa.schema(
    [
        pa.field("time", TIMESTAMP_UTC, nullable=False),
        pa.field("level", pa.string(), nullable=False),
        pa.field("level_no", pa.int32(), nullable=False),
        pa.field("component", pa.string()),
        pa.field("module", pa.string(), nullable=False),
        pa.field("function", pa.string(), nullable=False),
        pa.field("line", pa.int32(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
        pa.field("exception_type", pa.string()),
        pa.field("exception_value", pa.string()),
        pa.field("extra", pa.string()),
        pa.field("process_id", pa.int64(), nullable=False),
        pa.field("thread_name", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
    ]
)
"""One log record, flattened: ``record.time.timestamp`` as UTC, ``record.name`` as the
component, ``extra`` as JSON text with sorted keys; ``source_file`` is the log file's name."""

MAX_LINE_BYTES = 64 * 1024 * 1024
"""A longer line is counted as malformed (and skipped in chunks) rather than held in memory."""

MALFORMED_EXAMPLES = 10
"""Line numbers of malformed lines kept per file for the manifest (with why, never what)."""

DEFAULT_MAX_DECOMPRESSED_BYTES = 1 << 30
"""A compressed log file inflating to more than this (1 GiB) is refused."""

DEFAULT_MAX_COMPRESSION_RATIO = 500.0
"""A compressed log file inflating to more than this many times the compressed bytes read
is refused. Loguru JSON logs compress 10-20x (gzip to xz); a flood of one message repeated
reaches ~75x in gzip, ~200x in bz2 and ~380x in xz. Deflate cannot exceed ~1032x, so every
gzip or zip bomb is caught by the ratio long before it reaches the size limit."""

RATIO_FLOOR_BYTES = 64 * 1024
"""A file is never refused for its ratio before it has inflated to this much."""

RefusalReason = Literal["symlink", "not_regular", "vanished", "too_large", "ratio"]


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


@dataclass(frozen=True)
class RefusedLogFile:
    """A name of the log folder that looks like a log file but was not read (or not used)."""

    name: str
    reason: RefusalReason
    why: str
    fix: str

    def facts(self) -> dict[str, str]:
        """The refusal for the manifest and metadata."""
        return {"name": self.name, "reason": self.reason, "why": self.why, "fix": self.fix}


Kind = Literal["plain", "gzip", "bz2", "xz", "zip", "tar"]

# NAME.log, NAME.<anything>.log, NAME.log.3 (logrotate), then an optional compression suffix.
_LOG_NAME = re.compile(
    r"^.+\.log(?:\.[0-9]+)?(?P<suffix>\.gz|\.bz2|\.xz|\.lzma|\.zip|\.tar|\.tar\.gz|\.tgz"
    r"|\.tar\.bz2|\.tar\.xz)?$"
)
_KINDS: dict[str | None, Kind] = {  # by compression suffix
    None: "plain", ".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".lzma": "xz", ".zip": "zip",
    ".tar": "tar", ".tar.gz": "tar", ".tgz": "tar", ".tar.bz2": "tar", ".tar.xz": "tar",
}  # fmt: skip
_TAR_CODECS: dict[str, Kind] = {  # the codec around a tar archive, by suffix
    ".tar": "plain", ".tar.gz": "gzip", ".tgz": "gzip", ".tar.bz2": "bz2", ".tar.xz": "xz",
}  # fmt: skip

# Errors of a compressed file that does not decompress (truncated, corrupt, encrypted).
_READ_ERRORS = (
    OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile, tarfile.TarError,
    NotImplementedError, RuntimeError,
)  # fmt: skip

# Loguru serializes ``record`` last and ``time`` last in it: a line ends with its timestamp.
_TIME_AT_END = re.compile(rb'"timestamp": ?(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)\}\}\}\s*$')
_TIME_PROBE_BYTES = 96
_SKIP_CHUNK = 1 << 20
# Compressed bytes are handed to a decompressor in small pieces, and decompressed bytes
# taken in chunks, so that the limits are checked before a bomb's first megabyte is parsed.
_PIECE = 256
_ZIP_METHODS = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
_INFLATE_CHUNK = 64 * 1024

_INT32 = 2**31
_INT64 = 2**63
_DAY_US = 86_400_000_000
_EPOCH = date(1970, 1, 1)
_SURROGATE = re.compile("[\ud800-\udfff]")


def day_bounds_us(day: date) -> tuple[int, int]:
    """``[day, day + 1)`` in microseconds since the epoch (UTC)."""
    start = (day - _EPOCH).days * _DAY_US
    return start, start + _DAY_US


def iso_us(moment_us: int) -> str:
    """ISO-8601 UTC text of a microsecond timestamp, ``2026-11-01T00:00:00.000000Z``."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=moment_us)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def component_matches(component: str | None, prefixes: tuple[str, ...]) -> bool:
    """Whether a dotted component is one of ``prefixes`` or below one: ``proxywhirl.api``
    matches ``proxywhirl.api`` and ``proxywhirl.api.core``, not ``proxywhirl.apix``."""
    if component is None:
        return False
    return any(component == p or component.startswith(p + ".") for p in prefixes)


@dataclass(frozen=True)
class LogSelection:
    """Which records of the day to return: a window ``[start_us, end_us)`` inside it, a
    minimum level number and component prefixes (None: all)."""

    start_us: int
    end_us: int
    min_level_no: int | None = None
    components: tuple[str, ...] | None = None

    def selects(self, time_us: int, level_no: int, component: str | None) -> bool:
        """Whether a record with these fields is selected."""
        if not self.start_us <= time_us < self.end_us:
            return False
        if self.min_level_no is not None and level_no < self.min_level_no:
            return False
        return self.components is None or component_matches(component, self.components)


@dataclass
class LogFileScan:
    """What reading one log file found, for the day being exported."""

    name: str
    kind: Kind
    lines: int = 0
    records_in_day: int = 0
    malformed: int = 0
    partial: int = 0
    earliest_us: int | None = None
    latest_us: int | None = None
    max_lateness_us: int = 0
    malformed_examples: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    bytes_read: int = 0  # of the (plain) file: pass 2 reads no further

    def facts(self) -> dict[str, Any]:
        """The file's facts for the manifest (JSON-ready)."""
        facts: dict[str, Any] = {
            "name": self.name,
            "compression": None if self.kind == "plain" else self.kind,
            "lines": self.lines,
            "records_in_day": self.records_in_day,
            "malformed": self.malformed,
            "partial": self.partial,
            "earliest": None if self.earliest_us is None else iso_us(self.earliest_us),
            "latest": None if self.latest_us is None else iso_us(self.latest_us),
            "max_lateness_us": self.max_lateness_us,
        }
        if self.malformed_examples:
            facts["malformed_examples"] = list(self.malformed_examples)
        if self.error is not None:
            facts["error"] = self.error
        return facts

    def _saw(self, time_us: int) -> None:
        if self.earliest_us is None or time_us < self.earliest_us:
            self.earliest_us = time_us
        if self.latest_us is None or time_us > self.latest_us:
            self.latest_us = time_us

    def _malformed(self, line_number: int, reason: str) -> None:
        self.malformed += 1
        if len(self.malformed_examples) < MALFORMED_EXAMPLES:
            self.malformed_examples.append({"line": line_number, "reason": reason})


Row = tuple[Any, ...]
"""One record's values in ``LOG_SCHEMA`` order, less ``source_file``."""

OrderedRow = tuple[int, str, int, Row]
"""(time in µs, file name, line number, row): the merge order."""


@dataclass
class _OpenLogFile:
    path: Path
    raw: BinaryIO
    scan: LogFileScan
    size: int  # on disk, when opened
    limits: LogLimits
    refusal: RefusedLogFile | None = None  # set by pass 1 when the file is a bomb


class LogDay:
    """The log files of a folder, scanned for one UTC day and held open until ``close``."""

    def __init__(
        self, log_dir: Path, day: date, files: list[_OpenLogFile], ignored: list[dict[str, str]],
        refused: list[RefusedLogFile], limits: LogLimits,
    ) -> None:  # fmt: skip
        self.log_dir = log_dir
        self.day = day
        self.start_us, self.end_us = day_bounds_us(day)
        self._files = files
        self.ignored = ignored
        """Names in the folder that were not read, and why."""
        self.refused = refused
        """Log files not read, or read and refused whole (bombs), in file name order."""
        self.limits = limits

    @property
    def scans(self) -> list[LogFileScan]:
        """What pass 1 found in each log file, in file name order."""
        return [f.scan for f in self._files]

    def facts(self) -> dict[str, Any]:
        """The folder's facts for the manifest: files read, ignored and refused names, totals."""
        scans = self.scans
        return {
            "log_dir": str(self.log_dir),
            "day": {"start": iso_us(self.start_us), "end": iso_us(self.end_us)},
            "files": [scan.facts() for scan in scans],
            "ignored_files": [dict(entry) for entry in self.ignored],
            "refused_files": [refusal.facts() for refusal in self.refused],
            "limits": self.limits.facts(),
            "totals": {
                "files": len(scans),
                "lines": sum(s.lines for s in scans),
                "records_in_day": sum(s.records_in_day for s in scans),
                "malformed": sum(s.malformed for s in scans),
                "partial": sum(s.partial for s in scans),
                "unreadable_files": sum(s.error is not None for s in scans),
                "refused_files": len(self.refused),
            },
        }

    def rows(self, selection: LogSelection) -> Iterator[tuple[str, Row]]:
        """The selected records of the day, as (source file, row), ordered by time, then
        file name and line number."""
        streams = [
            _ordered_rows(f, self.start_us, self.end_us, selection)
            for f in self._files
            if f.scan.records_in_day
        ]
        for _, name, _, row in heapq.merge(*streams):
            yield name, row

    def batches(self, selection: LogSelection, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """``rows`` as record batches of ``LOG_SCHEMA``, unmasked (the caller masks)."""
        pending: list[tuple[str, Row]] = []
        for item in self.rows(selection):
            pending.append(item)
            if len(pending) >= batch_rows:
                yield log_batch(pending)
                pending = []
        if pending:
            yield log_batch(pending)

    def close(self) -> None:
        """Close every file descriptor (idempotent); the scans stay readable."""
        for f in self._files:
            f.raw.close()


def open_log_day(log_dir: Path, day: date, limits: LogLimits | None = None) -> LogDay:
    """Scan every log file of ``log_dir`` for ``day`` (pass 1); the caller closes the result.

    A missing folder is a ``SourceError``; an empty one gives a day without records. Only
    regular files are opened, never through a symbolic link; a log name that is a link, a
    FIFO, a socket, a device or a directory, a file gone before it is opened and a
    compressed file that inflates past ``limits`` are refused: named in ``refused``, never
    fatal for the other files.
    """
    limits = limits or LogLimits()
    if not log_dir.is_dir():
        what = "is not a folder" if log_dir.exists() else "does not exist"
        raise SourceError(
            f"ProxyWhirl log folder {log_dir} {what}: set PROXYWHIRL_LOG_DIR to the folder of "
            "ProxyWhirl's JSON logs (the sink of configure_logging(format='json'))"
        )
    start_us, end_us = day_bounds_us(day)
    files: list[_OpenLogFile] = []
    ignored: list[dict[str, str]] = []
    refused: list[RefusedLogFile] = []
    try:
        with os.scandir(log_dir) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as error:
        raise SourceError(
            f"cannot list ProxyWhirl log folder {log_dir}: {error.strerror or error}"
        ) from None
    kinds = {
        entry.name: (_KINDS[match["suffix"]], match["suffix"])
        for entry in entries
        if (match := _LOG_NAME.match(entry.name)) is not None
    }
    # Types as listed (lstat: a link is a link); the file opened is checked again.
    types = {entry.name: _entry_type(entry) for entry in entries if entry.name in kinds}
    vanished: set[str] = set()
    try:
        for entry in entries:
            name = entry.name
            if name not in kinds:
                ignored.append({"name": name, "why": "not a log file"})
                continue
            kind, suffix = kinds[name]
            source = None if suffix is None else name.removesuffix(suffix)
            if source in types and types[source] == "" and source not in vanished:
                # Loguru compresses a rotated file next to it, then deletes it: until then
                # the uncompressed one is whole and the archive may not be. (If it is gone
                # already, the archive is complete: read that.)
                ignored.append({"name": name, "why": f"being compressed from {source}"})
                continue
            opened = (
                _open_log_file(log_dir / name, kind, limits)
                if types[name] == ""
                else _refuse_type(log_dir / name, types[name])
            )
            if isinstance(opened, RefusedLogFile):
                if opened.reason == "vanished":
                    vanished.add(name)
                refused.append(opened)
                continue
            files.append(opened)
            _scan(opened, start_us, end_us)
            if opened.refusal is not None:
                files.pop().raw.close()
                refused.append(opened.refusal)
            elif not opened.scan.records_in_day:
                opened.raw.close()  # pass 2 does not need it
    except BaseException:
        for f in files:
            f.raw.close()
        raise
    return LogDay(log_dir, day, files, ignored, refused, limits)


def _entry_type(entry: os.DirEntry[str]) -> str:
    """What a listed name is, without following a link: "" for a regular file, "vanished"."""
    try:
        mode = entry.stat(follow_symlinks=False).st_mode
    except FileNotFoundError:
        return "vanished"
    except OSError:
        return ""  # let opening it say what is wrong
    return "" if stat.S_ISREG(mode) else _file_type(mode)


def _file_type(mode: int) -> str:
    kinds = (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((what for test, what in kinds if test(mode)), "not a regular file")


def _open_log_file(path: Path, kind: Kind, limits: LogLimits) -> _OpenLogFile | RefusedLogFile:
    """Open a regular file of the folder, or say why not. O_NOFOLLOW: a link swapped in
    since the listing is not followed; O_NONBLOCK: nor does a FIFO block the open."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        return _refuse_type(path, "vanished")
    except OSError as error:
        if error.errno == errno.ELOOP:
            return _refuse_type(path, "a symbolic link")
        if error.errno == errno.ENXIO:  # what opening a socket gives
            return _refuse_type(path, "a socket")
        raise SourceError(
            f"cannot read ProxyWhirl log file {path}: {error.strerror or error}"
        ) from None
    try:
        status = os.fstat(descriptor)
        if stat.S_ISREG(status.st_mode):
            os.set_blocking(descriptor, True)
            raw = os.fdopen(descriptor, "rb")  # owns the descriptor from here
            return _OpenLogFile(path, raw, LogFileScan(path.name, kind), status.st_size, limits)
    except BaseException:
        os.close(descriptor)
        raise
    os.close(descriptor)
    return _refuse_type(path, _file_type(status.st_mode))


def _refuse_type(path: Path, what: str) -> RefusedLogFile:
    """The refusal of a name that is not a regular file (``what`` it is), or is gone."""
    if what == "vanished":
        return RefusedLogFile(
            path.name, "vanished",
            "disappeared between the folder's listing and its opening (rotated, compressed "
            "or deleted meanwhile)",
            "if it held records of this day, export the partition again",
        )  # fmt: skip
    if what == "a symbolic link":
        with contextlib.suppress(OSError):
            what = f"a symbolic link to {os.readlink(path)}"
        return RefusedLogFile(
            path.name, "symlink",
            f"{what}, not followed: logs are read only from regular files in the log folder",
            "if it is a genuine ProxyWhirl log, move or copy the file itself into the folder",
        )  # fmt: skip
    return RefusedLogFile(
        path.name, "not_regular",
        f"{what}, not a regular file: not opened",
        "remove it from the log folder, or rename it so that it does not end like a log "
        "file (.log, .log.gz, ...)",
    )  # fmt: skip


def log_batch(items: list[tuple[str, Row]]) -> pa.RecordBatch:
    """A ``LOG_SCHEMA`` batch of (source file, row) items."""
    columns: list[list[Any]] = [[] for _ in LOG_SCHEMA]
    last = len(LOG_SCHEMA) - 1
    for name, row in items:
        for i, value in enumerate(row):
            columns[i].append(value)
        columns[last].append(name)
    arrays = []
    for values, schema_field in zip(columns, LOG_SCHEMA, strict=True):
        try:
            arrays.append(pa.array(values, schema_field.type))
        except UnicodeEncodeError:
            # A JSON "\ud800" escape decodes to a lone surrogate, which UTF-8 cannot hold.
            arrays.append(pa.array([_without_surrogates(v) for v in values], schema_field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=LOG_SCHEMA)


def _without_surrogates(value: Any) -> Any:
    return _SURROGATE.sub("\ufffd", value) if isinstance(value, str) else value


# --- reading a file -------------------------------------------------------------------


class _ReadFailure(Exception):
    """A log file stopped decompressing; carries what went wrong."""


class _Refused(Exception):
    """A compressed log file inflated past a limit; carries the refusal."""

    def __init__(self, refusal: RefusedLogFile) -> None:
        super().__init__(refusal.why)
        self.refusal = refusal


class _LineSource(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


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
        self, opened: _OpenLogFile, metered: _MeteredFile, held: Callable[[], int]
    ) -> None:
        self._opened = opened
        self._metered = metered
        self._held = held
        self.bytes_out = 0

    def count(self, size: int) -> None:
        """Add ``size`` bytes given; ``_Refused`` past a limit."""
        self.bytes_out += size
        limits = self._opened.limits
        # Never more than the file's size: zip entries can share their compressed data.
        used = max(1, min(self._metered.bytes_read - self._held(), self._opened.size))
        if self.bytes_out > limits.max_decompressed_bytes:
            why = (
                f"inflates to more than max_decompressed_bytes ({limits.max_decompressed_bytes} "
                f"bytes; reading stopped after {used} compressed bytes)"
            )
            raise _Refused(self._refusal("too_large", why, "max_decompressed_bytes"))
        ratio = self.bytes_out / used
        if self.bytes_out > RATIO_FLOOR_BYTES and ratio > limits.max_compression_ratio:
            why = (
                f"a decompression bomb: {used} compressed bytes inflated to {self.bytes_out} "
                f"bytes ({ratio:.2f}x, more than max_compression_ratio "
                f"{limits.max_compression_ratio:g}x; reading stopped there)"
            )
            raise _Refused(self._refusal("ratio", why, "max_compression_ratio"))

    def _refusal(self, reason: RefusalReason, why: str, limit: str) -> RefusedLogFile:
        return RefusedLogFile(
            self._opened.path.name,
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


def _counted(stream: _Inflating, opened: _OpenLogFile, metered: _MeteredFile) -> io.BufferedReader:
    """``stream``, counted by an ``_Inflation`` of its own, with ``readline``."""
    return _bounded(stream, _Inflation(opened, metered, lambda: stream.held))


def _inflating(kind: Kind, metered: _MeteredFile) -> _Inflating:
    if kind == "gzip":
        return _GzipMembers(metered)
    if kind == "bz2":
        return _NothingHeld(bz2.BZ2File(metered, "rb"))
    return _NothingHeld(lzma.LZMAFile(cast(IO[bytes], metered), "rb"))


def _file_lines(
    opened: _OpenLogFile, scan: LogFileScan, *, bytes_limit: int | None
) -> Iterator[bytes | None]:
    """The file's lines (``None`` for a line longer than ``MAX_LINE_BYTES``), members of an
    archive one after the other; decompression errors become ``_ReadFailure``, inflating
    past the limits ``_Refused``."""
    raw = opened.raw
    raw.seek(0)
    kind = scan.kind
    try:
        if kind == "plain":
            yield from _stream_lines(raw, bytes_limit, scan)
            return
        metered = _MeteredFile(raw)
        if kind == "zip":
            yield from _zip_lines(opened, metered)
        elif kind == "tar":
            yield from _tar_lines(opened, metered)
        else:
            yield from _stream_lines(
                _counted(_inflating(kind, metered), opened, metered), None, None
            )
    except _READ_ERRORS as error:
        raise _ReadFailure(f"{type(error).__name__}: {error}") from None


def _zip_lines(opened: _OpenLogFile, metered: _MeteredFile) -> Iterator[bytes | None]:
    metered.whole = True
    with zipfile.ZipFile(cast(IO[bytes], metered)) as archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
    current: list[_ZipMember] = []
    # All members together: a zip can hold many small bombs, or entries sharing one.
    members = _Inflation(opened, metered, lambda: current[-1].held if current else 0)
    for info in infos:
        current[:] = [_ZipMember(metered, info)]
        yield from _stream_lines(_bounded(current[-1], members), None, None)


def _tar_lines(opened: _OpenLogFile, metered: _MeteredFile) -> Iterator[bytes | None]:
    match = _LOG_NAME.match(opened.path.name)
    codec = _TAR_CODECS[match["suffix"] if match is not None else ".tar"]
    stream = (
        _NothingHeld(io.BufferedReader(metered, _PIECE))
        if codec == "plain"
        else _inflating(codec, metered)
    )
    # Two counts: the tar stream (headers too: a pax header can be huge) and the members'
    # bytes (a sparse member's holes are made up, not read).
    members = _Inflation(opened, metered, lambda: stream.held)
    with tarfile.open(fileobj=_counted(stream, opened, metered), mode="r|") as archive:
        for entry in archive:
            extracted = archive.extractfile(entry) if entry.isfile() else None
            if extracted is not None:
                with extracted:
                    yield from _stream_lines(_bounded(extracted, members), None, None)


def _stream_lines(
    stream: _LineSource, bytes_limit: int | None, scan: LogFileScan | None
) -> Iterator[bytes | None]:
    """Lines split on ``b"\\n"`` only, at most ``bytes_limit`` bytes in all; an overlong line
    is skipped in chunks and given as ``None``. Bytes read are added to ``scan.bytes_read``."""
    remaining = bytes_limit
    while remaining is None or remaining > 0:
        limit = MAX_LINE_BYTES + 1 if remaining is None else min(MAX_LINE_BYTES + 1, remaining)
        line = stream.readline(limit)
        if not line:
            return
        size = len(line)
        overlong = size > MAX_LINE_BYTES and not line.endswith(b"\n")
        tail = line
        while overlong and not tail.endswith(b"\n"):
            chunk = _SKIP_CHUNK if remaining is None else min(_SKIP_CHUNK, remaining - size)
            if chunk <= 0:
                break
            tail = stream.readline(chunk)
            if not tail:
                break
            size += len(tail)
        if remaining is not None:
            remaining -= size
        if scan is not None:
            scan.bytes_read += size
        yield None if overlong else line


def _probe_time_us(line: bytes) -> int | None:
    """The timestamp at the end of a loguru line, without parsing the line; None if absent."""
    match = _TIME_AT_END.search(line, max(0, len(line) - _TIME_PROBE_BYTES))
    if match is None:
        return None
    seconds = float(match[1])
    return round(seconds * 1_000_000) if math.isfinite(seconds) else None


def _records_of_day(
    opened: _OpenLogFile, scan: LogFileScan, start_us: int, end_us: int,
    *, bytes_limit: int | None, line_limit: int | None,
) -> Iterator[tuple[int, int, dict[str, Any]]]:  # fmt: skip
    """The file's valid records of ``[start_us, end_us)`` as (line number, time, record),
    in file order; counts every line into ``scan``."""
    for line in islice(_file_lines(opened, scan, bytes_limit=bytes_limit), line_limit):
        scan.lines += 1
        number = scan.lines
        if line is None:
            scan._malformed(number, f"longer than {MAX_LINE_BYTES} bytes")
            continue
        probed = _probe_time_us(line)
        if probed is not None and not start_us <= probed < end_us:
            scan._saw(probed)
            continue
        parsed = _parse_record(line)
        if isinstance(parsed, str):
            if line.endswith(b"\n"):
                scan._malformed(number, parsed)
            else:
                scan.partial += 1
            continue
        time_us, record = parsed
        scan._saw(time_us)
        if start_us <= time_us < end_us:
            scan.records_in_day += 1
            yield number, time_us, record


def _scan(opened: _OpenLogFile, start_us: int, end_us: int) -> None:
    """Pass 1: count the file's lines and records of the day and measure their lateness."""
    scan = opened.scan
    latest: int | None = None
    try:
        for _, time_us, _ in _records_of_day(
            opened, scan, start_us, end_us, bytes_limit=None, line_limit=None
        ):
            if latest is None or time_us > latest:
                latest = time_us
            else:
                scan.max_lateness_us = max(scan.max_lateness_us, latest - time_us)
    except _ReadFailure as failure:
        scan.error = f"stopped after line {scan.lines}: {failure}"
    except _Refused as refused:
        # The whole file is refused: a bomb can hide forged records among real ones.
        opened.refusal = refused.refusal


def _ordered_rows(
    opened: _OpenLogFile, start_us: int, end_us: int, selection: LogSelection
) -> Iterator[OrderedRow]:
    """Pass 2: the file's selected records of the day in (time, line) order.

    A record is held in a heap until the latest time seen, less the file's lateness, has
    reached it: no later line can then come before it.
    """
    first = opened.scan
    again = LogFileScan(first.name, first.kind)
    lateness = first.max_lateness_us
    pending: list[OrderedRow] = []
    latest: int | None = None
    try:
        for number, time_us, record in _records_of_day(
            opened, again, start_us, end_us,
            bytes_limit=first.bytes_read if first.kind == "plain" else None,
            line_limit=first.lines,
        ):  # fmt: skip
            latest = time_us if latest is None or time_us > latest else latest
            level_no = record["level"]["no"]
            if selection.selects(time_us, level_no, record["name"]):
                heapq.heappush(pending, (time_us, first.name, number, _row(time_us, record)))
            while pending and pending[0][0] <= latest - lateness:
                yield heapq.heappop(pending)
    except (_ReadFailure, _Refused) as failure:
        raise SourceError(
            f"ProxyWhirl log file {opened.path} could not be read again: {failure}"
        ) from None
    if again.records_in_day != first.records_in_day:
        raise SourceError(
            f"ProxyWhirl log file {opened.path} changed while it was exported "
            f"({first.records_in_day} records of the day at first, {again.records_in_day} "
            "when read again): export the partition again"
        )
    while pending:
        yield heapq.heappop(pending)


# --- one line -------------------------------------------------------------------------


def _parse_record(line: bytes) -> tuple[int, dict[str, Any]] | str:
    """(time in µs, loguru ``record``) of a line, or why it is not a loguru record."""
    if line.isspace():  # cheaply: a flood of empty lines costs no JSON error each
        return "blank line"
    try:
        document = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8"
    except (ValueError, RecursionError):
        return "not JSON"
    record = document.get("record") if isinstance(document, dict) else None
    if not isinstance(record, dict):
        return "JSON without a loguru record"
    problem = _record_problem(record)
    if problem is not None:
        return f"loguru record with {problem}"
    seconds = record["time"]["timestamp"]
    time_us = seconds * 1_000_000 if isinstance(seconds, int) else round(seconds * 1_000_000)
    return time_us, record


def _is_int(value: Any, bound: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -bound <= value < bound


def _record_problem(record: dict[str, Any]) -> str | None:
    """What in ``record`` is not as loguru writes it, or None."""
    time = record.get("time")
    seconds = time.get("timestamp") if isinstance(time, dict) else None
    if (
        not isinstance(seconds, int | float)
        or isinstance(seconds, bool)
        or not math.isfinite(seconds)
    ):
        return "no time.timestamp"
    level = record.get("level")
    if (
        not isinstance(level, dict)
        or not isinstance(level.get("name"), str)
        or not _is_int(level.get("no"), _INT32)
    ):
        return "no level name and number"
    if not isinstance(record.get("message"), str):
        return "no message"
    name = record.get("name", ...)
    if name is not None and not isinstance(name, str):
        return "no name"
    if not isinstance(record.get("module"), str) or not isinstance(record.get("function"), str):
        return "no module or function"
    if not _is_int(record.get("line"), _INT32):
        return "no line"
    process, thread = record.get("process"), record.get("thread")
    if not isinstance(process, dict) or not _is_int(process.get("id"), _INT64):
        return "no process id"
    if not isinstance(thread, dict) or not isinstance(thread.get("name"), str):
        return "no thread name"
    exception = record.get("exception", ...)
    if exception is not None and not (
        isinstance(exception, dict)
        and isinstance(exception.get("type"), str | None)
        and isinstance(exception.get("value"), str | None)
    ):
        return "an exception that is neither null nor {type, value}"
    if "extra" not in record:
        return "no extra"
    return None


def _row(time_us: int, record: dict[str, Any]) -> Row:
    """A validated record's values in ``LOG_SCHEMA`` order (``source_file`` left out)."""
    exception = record["exception"]
    return (
        time_us,
        record["level"]["name"],
        record["level"]["no"],
        record["name"],
        record["module"],
        record["function"],
        record["line"],
        record["message"],
        None if exception is None else exception.get("type"),
        None if exception is None else exception.get("value"),
        extra_json(record["extra"]),
        record["process"]["id"],
        record["thread"]["name"],
    )


def extra_json(extra: Any) -> str | None:
    """``extra`` as JSON text with sorted keys (NaN and infinities as null); null as None.

    The separators stay ``", "`` and ``": "``: with a space between any two tokens, masking
    ``user:pass@`` (which stops at whitespace) can never span two JSON strings.
    """
    if extra is None:
        return None
    try:
        return json.dumps(extra, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(extra), sort_keys=True, ensure_ascii=False, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
