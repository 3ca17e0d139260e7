"""Reading ProxyWhirl's log folder: loguru JSON lines (``serialize=True``), one UTC day at a time.

Every log file of the folder is read (which, and how safely: ``log_files``): the live
``NAME.log``, loguru's rotated ``NAME.<created>.log``, logrotate's ``NAME.log.1`` and their
compressed forms, inflated against ``LogLimits`` (``log_inflate``). Files are streamed line
by line (split on ``b"\\n"`` only: messages may hold U+2028 or U+0085, which
``str.splitlines`` would break on), never read whole into memory; a line becomes a record
and a row in ``log_records``.

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

A log name that is not a regular file, or is gone before it is opened, and a compressed
file that inflates past the limits (a bomb, left out whole) are *refused*: named in
``LogDay.refused`` with why and what to do, never fatal for the other files.

No file name or modification time is trusted to bound a file's days: loguru names rotated
files after their creation, zip entries keep times to two seconds, logs can be dated in
the future of the file system's clock. Every file is scanned, cheaply, for every day.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from export_assets.lib.source.database import SourceError
from export_assets.lib.source.log_files import Kind, LogFile, RefusedLogFile, open_log_files
from export_assets.lib.source.log_inflate import (
    READ_ERRORS,
    InflationRefused,
    LogLimits,
    inflated_members,
)
from export_assets.lib.source.log_records import (
    Row,
    log_batch,
    parse_record,
    probe_time_us,
    record_row,
)

MAX_LINE_BYTES = 64 * 1024 * 1024
"""A longer line is counted as malformed (and skipped in chunks) rather than held in memory."""

MALFORMED_EXAMPLES = 10
"""Line numbers of malformed lines kept per file for the manifest (with why, never what)."""

_SKIP_CHUNK = 1 << 20
_DAY_US = 86_400_000_000
_EPOCH = date(1970, 1, 1)


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


OrderedRow = tuple[int, str, int, Row]
"""(time in µs, file name, line number, row): the merge order."""


@dataclass
class _OpenLogFile:
    file: LogFile
    scan: LogFileScan
    limits: LogLimits
    refusal: RefusedLogFile | None = None  # set by pass 1 when the file is a bomb

    @property
    def path(self) -> Path:
        return self.file.path


class LogDay:
    """The log files of a folder, scanned for one UTC day and held open until ``close``."""

    def __init__(
        self,
        log_dir: Path,
        day: date,
        files: list[_OpenLogFile],
        ignored: list[dict[str, str]],
        refused: list[RefusedLogFile],
        limits: LogLimits,
    ) -> None:
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
            f.file.raw.close()


def open_log_day(log_dir: Path, day: date, limits: LogLimits | None = None) -> LogDay:
    """Scan every log file of ``log_dir`` for ``day`` (pass 1); the caller closes the result.

    A missing folder is a ``SourceError``; an empty one gives a day without records. Only
    regular files are opened, never through a symbolic link; a log name that is a link, a
    FIFO, a socket, a device or a directory, a file gone before it is opened and a
    compressed file that inflates past ``limits`` are refused: named in ``refused``, never
    fatal for the other files.
    """
    limits = limits or LogLimits()
    listed = open_log_files(log_dir)
    start_us, end_us = day_bounds_us(day)
    files: list[_OpenLogFile] = []
    ignored: list[dict[str, str]] = []
    refused: list[RefusedLogFile] = []
    try:
        for item in listed:
            if isinstance(item, dict):
                ignored.append(item)
                continue
            if isinstance(item, RefusedLogFile):
                refused.append(item)
                continue
            opened = _OpenLogFile(item, LogFileScan(item.path.name, item.kind), limits)
            files.append(opened)
            _scan(opened, start_us, end_us)
            if opened.refusal is not None:
                files.pop().file.raw.close()
                refused.append(opened.refusal)
            elif not opened.scan.records_in_day:
                opened.file.raw.close()  # pass 2 does not need it
    except BaseException:
        for f in files:
            f.file.raw.close()
        raise
    return LogDay(log_dir, day, files, ignored, refused, limits)


# --- reading a file -------------------------------------------------------------------


class _ReadFailure(Exception):
    """A log file stopped decompressing; carries what went wrong."""


class _LineSource(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


def _file_lines(
    opened: _OpenLogFile, scan: LogFileScan, *, bytes_limit: int | None
) -> Iterator[bytes | None]:
    """The file's lines (``None`` for a line longer than ``MAX_LINE_BYTES``), members of an
    archive one after the other; decompression errors become ``_ReadFailure``, inflating
    past the limits ``InflationRefused``."""
    raw = opened.file.raw
    raw.seek(0)
    try:
        if scan.kind == "plain":
            yield from _stream_lines(raw, bytes_limit, scan)
            return
        for member in inflated_members(opened.file, opened.limits):
            yield from _stream_lines(member, None, None)
    except READ_ERRORS as error:
        raise _ReadFailure(f"{type(error).__name__}: {error}") from None


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


def _records_of_day(
    opened: _OpenLogFile,
    scan: LogFileScan,
    start_us: int,
    end_us: int,
    *,
    bytes_limit: int | None,
    line_limit: int | None,
) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """The file's valid records of ``[start_us, end_us)`` as (line number, time, record),
    in file order; counts every line into ``scan``."""
    for line in islice(_file_lines(opened, scan, bytes_limit=bytes_limit), line_limit):
        scan.lines += 1
        number = scan.lines
        if line is None:
            scan._malformed(number, f"longer than {MAX_LINE_BYTES} bytes")
            continue
        probed = probe_time_us(line)
        if probed is not None and not start_us <= probed < end_us:
            scan._saw(probed)
            continue
        parsed = parse_record(line)
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
    except InflationRefused as refused:
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
            opened,
            again,
            start_us,
            end_us,
            bytes_limit=first.bytes_read if first.kind == "plain" else None,
            line_limit=first.lines,
        ):
            latest = time_us if latest is None or time_us > latest else latest
            level_no = record["level"]["no"]
            if selection.selects(time_us, level_no, record["name"]):
                heapq.heappush(pending, (time_us, first.name, number, record_row(time_us, record)))
            while pending and pending[0][0] <= latest - lateness:
                yield heapq.heappop(pending)
    except (_ReadFailure, InflationRefused) as failure:
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
