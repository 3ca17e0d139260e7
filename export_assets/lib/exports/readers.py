"""Independent readers: prove a written data file parses in its format, and count its rows.

They share no code with the writers (``formats``, ``codecs``): each format is read back by
a different implementation (Python's csv, json, gzip, zipfile; zstandard's decompressor;
pyarrow.parquet; openpyxl's reader), so a bug in a writer shows up here instead of being
read back the way it was written. They stream where the format allows it; parquet and zip
need random access and xlsx is a zip archive, so a stream that cannot seek is first copied
to a temporary file on local disk.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import re
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any, BinaryIO, Protocol

import pyarrow as pa
import yaml
import zstandard

from export_assets.lib.exports.export import Compression, DocumentFormat, Format, RenderedFormat

_CHUNK = 1024 * 1024
_ZSTD_READ = 64 * 1024
# csv's default field limit (128 KiB) is below what a log message may hold.
_CSV_FIELD_LIMIT = 2**31 - 1
_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def count_rows(
    format: Format | DocumentFormat | RenderedFormat, compression: Compression, stream: BinaryIO
) -> int:
    """Decompress and fully parse a data file; its number of rows (records, not header).

    A document (yaml, or json holding one object rather than an array) is one record.

    ``stream`` is read from its current position (it need not seek; it is not closed).
    Raises ``ValueError`` naming the format and what is wrong if the bytes do not
    decompress or do not parse.
    """
    what = format if compression == "none" else f"{format}+{compression}"
    try:
        with decompressed(compression, stream, what) as plain:
            return _COUNTERS[format](plain, what)
    except ValueError:
        raise
    except (gzip.BadGzipFile, EOFError, zlib.error, zstandard.ZstdError) as error:
        raise ValueError(f"{what} does not decompress: {error}") from error


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class _ReadOnly(io.RawIOBase):
    """Any object with ``read(n)`` as a raw stream, so io.BufferedReader can buffer it."""

    def __init__(self, source: _Readable) -> None:
        super().__init__()
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._source.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _ZstdReader(io.RawIOBase):
    """zstd frames decompressed as a raw stream; unlike zstandard's stream_reader it says
    when the data ends inside a frame (a truncated file) instead of stopping quietly."""

    def __init__(self, source: _Readable, what: str) -> None:
        super().__init__()
        self._source = source
        self._what = what
        self._decompressor = zstandard.ZstdDecompressor()
        self._frame = self._decompressor.decompressobj()
        self._in_frame = False
        self._frames = 0
        self._pending = bytearray()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            # Small reads: what one read decompresses to is held in memory.
            data = self._source.read(_ZSTD_READ)
            if not data:
                if self._in_frame:
                    raise ValueError(f"{self._what} ends in the middle of a zstd frame")
                if not self._frames:
                    raise ValueError(f"{self._what} holds no zstd frame")
                return 0
            while data:
                self._in_frame = True
                self._pending += self._frame.decompress(data)
                if not self._frame.eof:
                    break
                self._frames += 1
                self._in_frame = False
                data = self._frame.unused_data
                self._frame = self._decompressor.decompressobj()
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        del self._pending[:size]
        return size


def _buffered(stream: _Readable) -> BinaryIO:
    """A buffered reader of ``stream`` that leaves ``stream`` open when closed."""
    return io.BufferedReader(_ReadOnly(stream), _CHUNK)


@contextlib.contextmanager
def decompressed(compression: Compression, stream: BinaryIO, what: str) -> Iterator[BinaryIO]:
    """The plain bytes of a data file compressed as ``compression`` (``what`` names it in
    errors: a damaged archive raises ``ValueError`` saying so)."""
    if compression == "none":
        yield stream
    elif compression == "gzip":
        with gzip.GzipFile(fileobj=_buffered(stream), mode="rb") as plain:
            yield _buffered(plain)
    elif compression == "zstd":
        yield io.BufferedReader(_ZstdReader(stream, what), _CHUNK)
    elif compression == "zip":
        with seekable_stream(stream) as seekable:
            try:
                archive = zipfile.ZipFile(seekable)
            except (zipfile.BadZipFile, OSError) as error:
                raise ValueError(f"{what} is not a zip archive: {error}") from error
            with archive:
                names = archive.namelist()
                if len(names) != 1:
                    raise ValueError(
                        f"{what} holds {len(names)} entries ({', '.join(names[:5])}); an "
                        "export archive holds exactly one data file"
                    )
                try:
                    with archive.open(names[0]) as plain:
                        yield _buffered(plain)
                except zipfile.BadZipFile as error:
                    raise ValueError(f"{what} entry {names[0]} is damaged: {error}") from error
    else:
        raise ValueError(f"unknown compression {compression!r}")


@contextlib.contextmanager
def seekable_stream(stream: IO[bytes]) -> Iterator[IO[bytes]]:
    """``stream`` itself if it can seek, else a local temporary copy of it."""
    try:
        seekable = stream.seekable()
    except (AttributeError, ValueError):
        seekable = False
    if seekable:
        yield stream
        return
    with tempfile.TemporaryFile(prefix="export-check-") as copy:
        shutil.copyfileobj(stream, copy, _CHUNK)
        copy.seek(0)
        yield copy


def _count_csv(stream: BinaryIO, what: str) -> int:
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="")
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader, None)
        if not header:
            raise ValueError(f"{what} has no header row")
        rows = 0
        for row in reader:
            if len(row) != len(header):
                raise ValueError(
                    f"{what} record {rows + 1} has {len(row)} fields, the header {len(header)}"
                )
            rows += 1
        return rows
    except csv.Error as error:
        raise ValueError(
            f"{what} is not valid CSV near record {reader.line_num}: {error}"
        ) from error
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} is not UTF-8: {error}") from error
    finally:
        text.detach()


class _NotJson(ValueError):
    """A value Python's json accepts but JSON does not (NaN, Infinity)."""


def _reject_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON value")


def _json_object(data: bytes | str, what: str, where: str) -> None:
    try:
        value = json.loads(data, parse_constant=_reject_constant)
    except (json.JSONDecodeError, _NotJson, UnicodeDecodeError) as error:
        raise ValueError(f"{what} {where} is not JSON: {error}") from error
    if not isinstance(value, dict):
        raise ValueError(f"{what} {where} is a {type(value).__name__}, not a JSON object")


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    """The lines of ``stream``, split on b"\\n" only, each with its b"\\n" (the last may
    lack one)."""
    pending = bytearray()
    while chunk := stream.read(_CHUNK):
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            yield bytes(pending[start : end + 1])
            start = end + 1
        del pending[:start]
    if pending:
        yield bytes(pending)


def _count_jsonl(stream: BinaryIO, what: str) -> int:
    rows = 0
    for line in _lines(stream):
        rows += 1
        if not line.endswith(b"\n"):
            raise ValueError(f"{what} line {rows} is not terminated by a newline")
        _json_object(line, what, f"line {rows}")
    return rows


def _count_json(stream: BinaryIO, what: str) -> int:
    """Count the objects of one JSON array, decoding one element at a time."""
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="")
    buffer = ""
    pos = 0
    at_end = False

    def more() -> bool:
        """Append the next chunk to the buffer, dropping what has been parsed."""
        nonlocal buffer, pos, at_end
        chunk = "" if at_end else text.read(_CHUNK)
        if not chunk:
            at_end = True
            return False
        buffer, pos = buffer[pos:] + chunk, 0
        return True

    def next_char() -> str:
        """The next character that is not JSON whitespace ('' at the end), not consumed."""
        nonlocal pos
        while True:
            match = _JSON_SPACE.match(buffer, pos)
            pos = match.end() if match else pos
            if pos < len(buffer) or not more():
                return buffer[pos : pos + 1]

    try:
        if next_char() == "{":  # a document (a config): one object, small by nature
            _json_object(buffer[pos:] + text.read(), what, "document")
            return 1
        if next_char() != "[":
            raise ValueError(f"{what} does not start with a JSON array '[' or an object")
        pos += 1
        rows = 0
        if next_char() == "]":
            pos += 1
        else:
            while True:
                while True:
                    try:
                        value, end = decoder.raw_decode(buffer, pos)
                    except _NotJson as error:
                        raise ValueError(
                            f"{what} element {rows + 1} is not JSON: {error}"
                        ) from error
                    except json.JSONDecodeError as error:
                        if more():
                            continue
                        raise ValueError(
                            f"{what} element {rows + 1} is not JSON: {error}"
                        ) from error
                    # A number or literal that ends the buffer may go on in the next chunk.
                    if end < len(buffer) or not more():
                        break
                if not isinstance(value, dict):
                    raise ValueError(
                        f"{what} element {rows + 1} is a {type(value).__name__}, not an object"
                    )
                rows += 1
                pos = end
                separator = next_char()
                pos += 1
                if separator == "]":
                    break
                if separator != ",":
                    raise ValueError(f"{what} element {rows} is not followed by ',' or ']'")
                next_char()
        if next_char():
            raise ValueError(f"{what} has data after its array: {buffer[pos : pos + 40]!r}")
        return rows
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} is not UTF-8: {error}") from error
    finally:
        text.detach()


def _count_txt(stream: BinaryIO, what: str) -> int:
    rows = 0
    for line in _lines(stream):
        rows += 1
        if not line.endswith(b"\n"):
            raise ValueError(f"{what} line {rows} is not terminated by a newline")
        try:
            url = line[:-1].decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{what} line {rows} is not UTF-8: {error}") from error
        if len(url.splitlines()) > 1:
            raise ValueError(f"{what} line {rows} holds a line break: {url[:80]!r}")
    return rows


def _count_parquet(stream: BinaryIO, what: str) -> int:
    import pyarrow.parquet as pq  # only Parquet files need it (and pyarrow.fs with it)

    with seekable_stream(stream) as seekable:
        try:
            parquet = pq.ParquetFile(seekable)
            rows = 0
            for batch in parquet.iter_batches(batch_size=65_536):
                rows += batch.num_rows
        except (pa.ArrowException, OSError) as error:
            raise ValueError(f"{what} is not a readable parquet file: {error}") from error
        if rows != parquet.metadata.num_rows:
            raise ValueError(
                f"{what} holds {rows} rows but its footer says {parquet.metadata.num_rows}"
            )
        return rows


def _count_xlsx(stream: BinaryIO, what: str) -> int:
    from openpyxl import load_workbook  # only when a workbook is read

    with seekable_stream(stream) as seekable:
        try:
            workbook = load_workbook(seekable, read_only=True, data_only=True)
        except Exception as error:  # openpyxl raises many types for a damaged workbook
            raise ValueError(f"{what} is not a readable xlsx workbook: {error}") from error
        try:
            rows = 0
            first_header: tuple[Any, ...] | None = None
            first_title = ""
            for sheet in workbook.worksheets:
                values = sheet.iter_rows(values_only=True)
                header = next(values, None)
                if header is None:
                    raise ValueError(f"{what} sheet {sheet.title!r} has no header row")
                if first_header is None:
                    first_header, first_title = header, sheet.title
                # A table continued on "{title} 2", "{title} 3"... repeats the first header;
                # a workbook of several tables (a report) has one header per sheet.
                elif sheet.title.startswith(f"{first_title} ") and header != first_header:
                    raise ValueError(
                        f"{what} sheet {sheet.title!r} has header {header}, the first sheet "
                        f"{first_header}"
                    )
                rows += sum(1 for _ in values)
            if first_header is None:
                raise ValueError(f"{what} has no sheet")
            return rows
        except ValueError:
            raise
        except Exception as error:  # a damaged sheet surfaces while its rows are read
            raise ValueError(f"{what} has a damaged sheet: {error}") from error
        finally:
            workbook.close()


def _count_yaml(stream: BinaryIO, what: str) -> int:
    """A YAML document holding one mapping is one record."""
    try:
        document = yaml.safe_load(io.TextIOWrapper(stream, encoding="utf-8", errors="strict"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValueError(f"{what} is not YAML: {error}") from error
    if not isinstance(document, dict):
        raise ValueError(f"{what} holds a {type(document).__name__}, not a mapping")
    return 1


_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")


def _count_pdf(stream: BinaryIO, what: str) -> int:
    """A PDF's pages: the file starts with ``%PDF-``, ends with ``%%EOF`` and has a page
    object per page (reportlab writes page dictionaries uncompressed)."""
    data = stream.read()
    if not data.startswith(b"%PDF-"):
        raise ValueError(f"{what} does not start with %PDF-: not a PDF")
    if b"%%EOF" not in data[-1024:]:
        raise ValueError(f"{what} has no %%EOF at its end: the PDF is truncated")
    pages = len(_PDF_PAGE.findall(data))
    if not pages:
        raise ValueError(f"{what} has no page")
    return pages


_COUNTERS: dict[Format | DocumentFormat | RenderedFormat, Callable[[BinaryIO, str], int]] = {
    "pdf": _count_pdf,
    "yaml": _count_yaml,
    "csv": _count_csv,
    "jsonl": _count_jsonl,
    "json": _count_json,
    "txt": _count_txt,
    "parquet": _count_parquet,
    "xlsx": _count_xlsx,
}
