"""Verification while writing, and the deep re-read of what was published.

What the IO manager streams out is scanned as it goes: text formats (csv, jsonl, json, txt,
yaml) as the text a reader sees, before compression; Parquet and xlsx, which compress
inside the file, value by value from the record batches they are written from; a rendered
document (PDF, workbook) as a whole, the way ``export-assets scan`` reads a file. A finding
stops the publish: the data file is never put in place and the partition keeps its previous
version. The sha256, byte and row counts are measured on the same pass
(``exports.streams.MeasuredStream``), and the bytes the destination stored are compared with
them before the manifest is published (S3 also checks every part's CRC32 on upload).

The deep re-read (:func:`reread_problems`, :func:`rescan_findings`) reads a published
partition back through its destination, for what may have happened since it was written.
"""

from __future__ import annotations

import hashlib
import io
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from export_assets.lib.exports.destinations import Destination
from export_assets.lib.exports.formats import text_scalar
from export_assets.lib.exports.manifest import ExportManifest, manifest_key, partition_folder
from export_assets.lib.exports.readers import count_rows
from export_assets.lib.security.leaks import Finding, KnownCredentials, LeakScanner

MAX_FINDINGS_SHOWN = 20
READ_CHUNK = 1 << 20
# Text is scanned a chunk of whole lines at a time; a line longer than this is scanned in
# pieces that overlap by OVERLAP characters, so a secret across a cut is still seen.
CHUNK_BYTES = 256 << 10
IN_FLIGHT = 4
LONG_LINE_BYTES = 8 << 20
OVERLAP = 4096


class CredentialLeakError(RuntimeError):
    """What an export was about to publish holds a credential; nothing was published."""


class IntegrityError(RuntimeError):
    """The destination stored something other than what was written; nothing was published."""


class TextScan:
    """Scans text as it is written (UTF-8 bytes), whole lines at a time, numbering lines.

    The scan runs on a thread of its own, a piece behind the writer (the automaton releases
    the GIL): the writer's thread only cuts pieces at line ends and hands them on, at most
    IN_FLIGHT pieces ahead, so memory stays bounded.
    """

    def __init__(self, scanner: LeakScanner, name: str) -> None:
        self._scanner = scanner
        self._name = name
        self._pending = bytearray()
        self._line = 1
        self._tail = b""  # the end of a long line already scanned, rescanned with what follows
        self.findings: list[Finding] = []
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leak-scan")
        self._queued: deque[Future[None]] = deque()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Take the next bytes the writer emitted."""
        view = memoryview(data)
        # A piece at a time: a writer's large block is never held twice.
        for start in range(0, len(view), CHUNK_BYTES):
            self._pending += view[start : start + CHUNK_BYTES]
            if len(self._pending) >= CHUNK_BYTES:
                self._scan(final=False)

    def finish(self) -> list[Finding]:
        """Scan what is left; every finding of the file."""
        try:
            self._scan(final=True)
            while self._queued:
                self._queued.popleft().result()
        finally:
            self._worker.shutdown(wait=True, cancel_futures=True)
        return self.findings

    def close(self) -> None:
        """Stop scanning (the write failed): queued pieces are dropped (idempotent)."""
        self._worker.shutdown(wait=True, cancel_futures=True)

    def _scan(self, *, final: bool) -> None:
        pending = self._pending
        cut = len(pending) if final else pending.rfind(b"\n") + 1
        if cut == 0:
            if len(pending) < LONG_LINE_BYTES:
                return
            cut = len(pending)  # one very long line: scan it in overlapping pieces
        with memoryview(pending) as whole:  # one copy: pending[:cut] would make two
            piece = bytes(whole[:cut])
        del pending[:cut]
        while len(self._queued) >= IN_FLIGHT:
            self._queued.popleft().result()  # a failed scan raises here, in the writer
        self._queued.append(self._worker.submit(self._scan_piece, piece, final))

    def _scan_piece(self, piece: bytes, final: bool) -> None:
        """On the scan thread, in order: one piece, after the tail of the one before."""
        found = [what for _, what in self._scanner.leaks(self._tail + piece)]
        if self._tail:
            # Leaks wholly inside the rescanned tail were counted with the piece before.
            for _, what in self._scanner.leaks(self._tail):
                if what in found:
                    found.remove(what)
        if found:
            self._locate(piece)
        ends_in_line = not piece.endswith(b"\n")
        self._line += piece.count(b"\n")
        self._tail = piece[-OVERLAP:] if ends_in_line and not final else b""

    def _locate(self, piece: bytes) -> None:
        # Rare: only text that leaks is split into lines to name each finding's line.
        for number, line in enumerate(piece.split(b"\n"), start=self._line):
            self.findings += [
                Finding(self._name, str(number), what) for _, what in self._scanner.leaks(line)
            ]


def scan_batch(
    scanner: LeakScanner, name: str, batch: pa.RecordBatch, first_row: int
) -> list[Finding]:
    """Findings in the text values of ``batch``, whose first row is ``first_row`` (1-based)."""
    findings: list[Finding] = []
    for column_name, column in zip(batch.schema.names, batch.columns, strict=True):
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        if column.null_count == len(column):
            continue
        # Every value followed by a line break, joined in Arrow: one scan of the column.
        empty = text_scalar("", column.type)  # no pandas import (see text_scalar)
        values = pc.fill_null(column, empty)
        lines = pc.binary_join_element_wise(values, empty, text_scalar("\n", column.type))
        if not scanner.leaks(_joined(lines)):
            continue
        for row, value in enumerate(values.to_pylist(), start=first_row):
            findings += [
                Finding(name, f"row {row} column {column_name}", what)
                for what in scanner.scan_text(value)
            ]
    return findings


def _joined(array: pa.Array) -> bytes:
    """The values of a string array as one UTF-8 text (contiguous in its data buffer)."""
    offsets_buffer, data = array.buffers()[1], array.buffers()[2]
    if data is None or offsets_buffer is None:
        return b""
    width = 8 if pa.types.is_large_string(array.type) else 4
    offsets = memoryview(offsets_buffer).cast("q" if width == 8 else "i")
    start, end = offsets[array.offset], offsets[array.offset + len(array)]
    return bytes(memoryview(data)[start:end])


def scan_document(scanner: LeakScanner, name: str, content: bytes) -> list[Finding]:
    """Findings in a rendered document (PDF, workbook), read as ``export-assets scan`` reads it."""
    return scanner.scan_stream(name, io.BytesIO(content))


@dataclass
class Verification:
    """What was proven about one partition's data file while it was written."""

    file: str
    rows: int
    bytes: int
    sha256: str
    stored_bytes: int | None = None
    findings: list[Finding] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def shown_findings(findings: Sequence[Finding]) -> list[str]:
    """At most MAX_FINDINGS_SHOWN findings, secrets masked, and how many more."""
    shown = [str(finding) for finding in findings[:MAX_FINDINGS_SHOWN]]
    if len(findings) > MAX_FINDINGS_SHOWN:
        shown.append(f"... and {len(findings) - MAX_FINDINGS_SHOWN} more")
    return shown


def coverage_description(findings: int, known: KnownCredentials) -> str:
    """One line on a leak scan: findings first, then what could not be looked for."""
    parts = [f"{findings} finding(s)" if findings else "no leak found"]
    parts += [
        f"but {gap.count} stored {gap.source} credential(s) could not be decrypted "
        f"({gap.problem}): their clear text was not looked for; set {gap.variable}"
        for gap in known.gaps
    ]
    return "; ".join(parts)


def bullet_list(lines: Sequence[str]) -> str:
    """Markdown bullets, or "none"."""
    return "\n".join(f"- {line}" for line in lines) or "none"


def reread_problems(destination: Destination, manifest: ExportManifest) -> list[str]:
    """What differs between a published partition and its manifest (empty: intact)."""
    problems: list[str] = []
    folder = partition_folder(manifest.asset, manifest.partition)
    for entry in manifest.files:
        key = f"{folder}/{entry.path}"
        digest = hashlib.sha256()
        size = 0
        try:
            with destination.open_read(key) as stream:
                while chunk := stream.read(READ_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
        except FileNotFoundError:
            problems.append(f"{entry.path}: listed in the manifest but missing")
            continue
        if size != entry.bytes:
            problems.append(f"{entry.path}: {size} bytes, manifest says {entry.bytes}")
        if digest.hexdigest() != entry.sha256:
            problems.append(f"{entry.path}: sha256 differs from the manifest")
        try:
            with destination.open_read(key) as stream:
                rows = count_rows(manifest.format, manifest.compression, stream)  # type: ignore[arg-type]
        except ValueError as exc:
            problems.append(f"{entry.path}: does not parse as {manifest.format}: {exc}")
            continue
        if rows != entry.rows:
            problems.append(f"{entry.path}: {rows} rows, manifest says {entry.rows}")
    return problems


def rescan_findings(
    destination: Destination, manifest: ExportManifest, scanner: LeakScanner
) -> list[Finding]:
    """Credentials in a published partition's files and manifest, as a reader sees them."""
    findings: list[Finding] = []
    folder = partition_folder(manifest.asset, manifest.partition)
    for entry in manifest.files:
        key = f"{folder}/{entry.path}"
        try:
            with destination.open_read(key) as stream:
                findings += scanner.scan_stream(key, stream)
        except FileNotFoundError:
            continue  # reported by reread_problems
    key = manifest_key(manifest.asset, manifest.partition)
    for number, line in enumerate(manifest.to_json().decode().splitlines(), start=1):
        findings += [Finding(key, str(number), what) for what in scanner.scan_text(line)]
    return findings
