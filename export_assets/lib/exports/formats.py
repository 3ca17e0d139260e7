"""File formats: streaming writers fed by Arrow record batches.

Every writer takes one batch at a time and keeps at most that batch (and what it turns it
into) in memory; ``close`` writes any trailer. Same rows in, same bytes out: no writer puts
a wall-clock time, a host name or a random value in a file.
"""

from __future__ import annotations

import array
import functools
import itertools
import json
import math
import struct
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from export_assets.lib.exports import spreadsheet
from export_assets.lib.exports.codecs import WriteStream
from export_assets.lib.exports.export import ExportOptions, Format
from export_assets.lib.source.arrays import text_offsets

EXTENSIONS: dict[Format, str] = {
    "csv": ".csv",
    "jsonl": ".jsonl",
    "json": ".json",
    "txt": ".txt",
    "parquet": ".parquet",
    "xlsx": ".xlsx",
}

ISO_DATE_FORMAT = "%Y-%m-%d"
_COPY_CHUNK = 1024 * 1024

TXT_URL_COLUMN = "url"
# Everything str.splitlines() breaks on: a URL holding one would read back as two lines.
_LINE_BREAKS = r"[\n\r\x{0B}\x{0C}\x{1C}-\x{1E}\x{85}\x{2028}\x{2029}]"

XLSX_MAX_DATA_ROWS = 1_048_575
"""Data rows per sheet: Excel's 1,048,576 rows less the header. Tests make it small."""
XLSX_SHEET_TITLE = "data"
XLSX_TIMESTAMP_FORMAT = "yyyy-mm-dd hh:mm:ss"
XLSX_DATE_FORMAT = "yyyy-mm-dd"

# Text columns are JSON-encoded by Arrow when no value needs escaping; slices of a batch
# are kept under this many bytes so the encoded text stays far below Arrow's 2 GiB limit
# of a string array.
_JSON_SLICE_BYTES = 64 * 1024 * 1024
_JSON_NEEDS_ESCAPE = r'[\x{00}-\x{1F}"\\]'
_INTEGER_TEXT = r"^-?[0-9]+$"


class FormatWriter(Protocol):
    """Writes batches of one schema in one format; ``close`` writes any trailer."""

    def write(self, batch: pa.RecordBatch) -> None: ...

    def close(self) -> None: ...


def open_format_writer(
    sink: WriteStream, schema: pa.Schema, options: ExportOptions
) -> FormatWriter:
    """A writer of ``options.format`` into ``sink`` (which it does not close)."""
    if options.format == "csv":
        return CsvWriter(sink, schema, neutralize_formulas=options.neutralize_formulas)
    if options.format == "jsonl":
        return JsonLinesWriter(sink, schema)
    if options.format == "json":
        return JsonArrayWriter(sink, schema)
    if options.format == "txt":
        return ProxyListWriter(sink, schema)
    if options.format == "parquet":
        return ParquetFileWriter(sink, schema, compression=options.parquet_compression)
    if options.format == "xlsx":
        return XlsxWriter(sink, schema, neutralize_formulas=options.neutralize_formulas)
    raise ValueError(f"unknown export format {options.format!r}; known: {', '.join(EXTENSIONS)}")


@functools.cache
def text_scalar(value: str, kind: pa.DataType = pa.string()) -> pa.Scalar:  # noqa: B008
    """``value`` as an Arrow text scalar of ``kind``, built from buffers.

    Handing a Python value to a compute function (or to ``pa.scalar``/``pa.array``) makes
    pyarrow ask whether it is a pandas object, and asking imports pandas: some 35 MiB and
    0.4 s that an export never uses. The writers pass these instead.
    """
    data = value.encode("utf-8", "surrogatepass")
    large = pa.types.is_large_string(kind) or pa.types.is_large_binary(kind)
    offsets = struct.pack("<qq" if large else "<ii", 0, len(data))
    array = pa.Array.from_buffers(kind, 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return array[0]


def text_array(values: list[str]) -> pa.Array:
    """Python strings (no None) as an Arrow string array, built from buffers (see
    :func:`text_scalar`: ``pa.array`` imports pandas)."""
    encoded = [value.encode("utf-8", "surrogatepass") for value in values]
    offsets = array.array("q" if len(encoded) and sum(map(len, encoded)) >= 2**31 else "i")
    offsets.extend(itertools.accumulate(map(len, encoded), initial=0))
    kind = pa.large_string() if offsets.typecode == "q" else pa.string()
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(kind, len(encoded), buffers)


def null_scalar(kind: pa.DataType) -> pa.Scalar:
    """A null of ``kind`` (see :func:`text_scalar`: ``pa.scalar(None, kind)`` imports pandas)."""
    return pa.nulls(1, kind)[0]


FALSE = pa.Array.from_buffers(pa.bool_(), 1, [None, pa.py_buffer(b"\x00")])[0]
"""``False`` as an Arrow scalar (see :func:`text_scalar`)."""


def iso_utc(column: pa.Array, before: str = "", after: str = "") -> pa.Array:
    """ISO-8601 UTC text of a timestamp column, ``2026-11-01T12:00:00.000000Z`` (fraction at
    the column's unit), between ``before`` and ``after``; null stays null.

    Arrow prints naive timestamps about fifteen times faster than it runs strftime, so the
    UTC instants are printed as naive ones and given their ``T`` and ``Z``.
    """
    naive = pc.cast(column, pa.timestamp(column.type.unit))  # same instants, no zone
    text = pc.cast(naive, pa.string())
    framed = _framed_fixed_width(text, before, after)
    return framed if framed is not None else _framed(text, before, after)


def _framed(text: pa.Array, before: str, after: str) -> pa.Array:
    """``before`` + ``text`` with its first space as ``T`` + ``Z`` + ``after``."""
    text = pc.replace_substring(text, " ", "T", max_replacements=1)
    return pc.binary_join_element_wise(
        text_scalar(before), text, text_scalar("Z" + after), text_scalar("")
    )


def _framed_fixed_width(text: pa.Array, before: str, after: str) -> pa.Array | None:
    """What :func:`_framed` makes, built as a grid of bytes when every value is printed at
    one width with its space after the date (no nulls, four-digit years): a tenth of the
    cost of Arrow's replace and join. None for anything else."""
    rows = len(text)
    if rows == 0 or text.null_count:
        return None
    data_buffer = text.buffers()[2]
    offsets = text_offsets(text)
    width = int(offsets[1] - offsets[0])
    head, tail = before.encode(), ("Z" + after).encode()
    row = len(head) + width + len(tail)
    if width <= 10 or (rows + 1) * row >= 2**31 or not (np.diff(offsets) == width).all():
        return None
    values = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
    values = values.reshape(rows, width)
    if not (values[:, 10] == ord(" ")).all():
        return None
    grid = np.empty((rows, row), dtype=np.uint8)
    grid[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    grid[:, len(head) : len(head) + width] = values
    grid[:, len(head) + 10] = ord("T")
    grid[:, len(head) + width :] = np.frombuffer(tail, dtype=np.uint8)
    new_offsets = np.arange(0, (rows + 1) * row, row, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), rows, [None, pa.py_buffer(new_offsets), pa.py_buffer(grid)]
    )


def _write_text(sink: WriteStream, text: pa.Array, *, skip: int = 0) -> None:
    """Write the concatenated values of a null-free string array straight from its buffer,
    less its first ``skip`` bytes."""
    if len(text) == 0:
        return
    if text.type != pa.string():
        text = text.cast(pa.string())
    _, offsets, data = text.buffers()
    # Offsets are little-endian int32, one more than values, from the array's offset.
    view = memoryview(offsets).cast("B")
    first = 4 * text.offset
    last = 4 * (text.offset + len(text))
    start = int.from_bytes(view[first : first + 4], "little", signed=True) + skip
    end = int.from_bytes(view[last : last + 4], "little", signed=True)
    if data is not None and end > start:
        sink.write(memoryview(data)[start:end])


def _slices(batch: pa.RecordBatch, max_bytes: int) -> Iterable[pa.RecordBatch]:
    """``batch`` in zero-copy row slices of at most about ``max_bytes`` each."""
    if batch.num_rows == 0:
        return
    size = batch.nbytes
    if size <= max_bytes:
        yield batch
        return
    rows = max(1, batch.num_rows * max_bytes // size)
    for start in range(0, batch.num_rows, rows):
        yield batch.slice(start, rows)


# --- csv ------------------------------------------------------------------------------


class CsvWriter:
    """RFC 4180 CSV, UTF-8, header row; timestamps as ISO-8601 UTC ending in ``Z``; text
    neutralised against formula injection unless turned off (see ``spreadsheet``)."""

    def __init__(
        self, sink: WriteStream, schema: pa.Schema, *, neutralize_formulas: bool = True
    ) -> None:
        self._timestamps = [i for i, f in enumerate(schema) if pa.types.is_timestamp(f.type)]
        self._neutralize = neutralize_formulas
        written = schema
        for i in self._timestamps:
            written = written.set(i, pa.field(schema.field(i).name, pa.string()))
        self._writer = pa_csv.CSVWriter(
            sink, written, write_options=pa_csv.WriteOptions(batch_size=8192)
        )
        self._schema = written

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        if self._neutralize:
            batch = spreadsheet.neutralize_batch(batch)
        columns = list(batch.columns)
        for i in self._timestamps:
            columns[i] = iso_utc(columns[i])
        self._writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=self._schema))

    def close(self) -> None:
        self._writer.close()


# --- json and jsonl -------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds") + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return str(value)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities (at any depth) as None: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_by_python(column: pa.Array) -> pa.Array:
    """JSON text of each value, one by one: for the rare values and types Arrow cannot do."""
    return text_array(
        [
            json.dumps(
                _finite(v),
                ensure_ascii=False,
                separators=(",", ":"),
                default=_json_default,
                allow_nan=False,
            )
            for v in column.to_pylist()
        ]
    ).cast(pa.string())


def _json_text(column: pa.Array) -> pa.Array:
    """JSON strings of a text column: Arrow quotes it, Python escapes the few that need it."""
    quote = text_scalar('"')
    quoted = pc.binary_join_element_wise(quote, column, quote, text_scalar(""))
    needs_escape = pc.fill_null(pc.match_substring_regex(column, _JSON_NEEDS_ESCAPE), FALSE)
    if pc.any(needs_escape).as_py():
        escaped = _json_by_python(column.filter(needs_escape))
        quoted = pc.replace_with_mask(quoted, needs_escape, escaped.cast(quoted.type))
    return quoted


def _json_float(column: pa.Array) -> pa.Array:
    """JSON numbers of a float column: NaN and infinities as null, ``1.0`` not ``1``."""
    finite = pc.is_finite(column)
    text = pc.cast(pc.if_else(finite, column, null_scalar(column.type)), pa.string())
    whole = pc.fill_null(pc.match_substring_regex(text, _INTEGER_TEXT), FALSE)
    return pc.if_else(
        whole, pc.binary_join_element_wise(text, text_scalar(".0"), text_scalar("")), text
    )


def _json_values(column: pa.Array) -> pa.Array:
    """Each value of ``column`` as JSON text; null as ``null``."""
    kind = column.type
    if spreadsheet.is_text(kind):
        text = _json_text(column)
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        text = pc.cast(column, pa.string())
    elif pa.types.is_floating(kind):
        text = _json_float(column)
    elif pa.types.is_timestamp(kind):
        text = iso_utc(column, '"', '"')
    elif pa.types.is_date(kind):
        quote = text_scalar('"')
        text = pc.binary_join_element_wise(
            quote, pc.strftime(column, format=ISO_DATE_FORMAT), quote, text_scalar("")
        )
    else:
        return _json_by_python(column)
    if text.type != pa.string():
        text = text.cast(pa.string())
    return pc.fill_null(text, text_scalar("null"))


class _JsonObjects:
    """Turns a batch into one JSON object per row (keys in schema order), vectorised."""

    def __init__(self, schema: pa.Schema) -> None:
        self._schema = schema
        keys = [json.dumps(name, ensure_ascii=False) for name in schema.names]
        self._prefixes = [("{" if i == 0 else ",") + key + ":" for i, key in enumerate(keys)]

    def rows(self, batch: pa.RecordBatch, before: str, after: str) -> Iterable[pa.Array]:
        """String arrays whose values are ``before + object + after``, one per row."""
        for part in _slices(batch, _JSON_SLICE_BYTES):
            pieces: list[pa.Array | pa.Scalar] = [text_scalar(before)]
            for prefix, column in zip(self._prefixes, part.columns, strict=True):
                pieces += [text_scalar(prefix), _json_values(column)]
            if self._prefixes:
                pieces.append(text_scalar("}"))
            else:
                pieces.append(pa.array(["{}"] * part.num_rows, pa.string()))
            pieces.append(text_scalar(after))
            yield pc.binary_join_element_wise(*pieces, text_scalar(""))


class JsonLinesWriter:
    """JSON Lines: one object per row and line, UTF-8, keys in schema order; timestamps as
    ISO-8601 UTC strings with ``Z``, NaN and infinities as null."""

    def __init__(self, sink: WriteStream, schema: pa.Schema) -> None:
        self._sink = sink
        self._objects = _JsonObjects(schema)

    def write(self, batch: pa.RecordBatch) -> None:
        for text in self._objects.rows(batch, "", "\n"):
            _write_text(self._sink, text)

    def close(self) -> None:
        """Nothing to finish: every line is complete once written."""


class JsonArrayWriter:
    """One JSON array, ``[\\n{...},\\n{...}\\n]``, written row by row (never built in memory);
    an empty export is ``[]``. Values as in :class:`JsonLinesWriter`."""

    def __init__(self, sink: WriteStream, schema: pa.Schema) -> None:
        self._sink = sink
        self._objects = _JsonObjects(schema)
        self._started = False

    def write(self, batch: pa.RecordBatch) -> None:
        # Every object goes out as ",\n{...}"; the first one's "," becomes the "[".
        for text in self._objects.rows(batch, ",\n", ""):
            if self._started:
                _write_text(self._sink, text)
            elif len(text):
                self._sink.write(b"[")
                _write_text(self._sink, text, skip=1)
                self._started = True

    def close(self) -> None:
        self._sink.write(b"\n]" if self._started else b"[]")


# --- txt ------------------------------------------------------------------------------


class ProxyListWriter:
    """A proxy list: the ``url`` column, one URL per line, UTF-8, ``\\n`` line ends."""

    def __init__(self, sink: WriteStream, schema: pa.Schema) -> None:
        if TXT_URL_COLUMN not in schema.names:
            raise ValueError(
                "txt is for proxy lists: one URL per line; this export has no url column "
                f"(its columns: {', '.join(schema.names)})"
            )
        self._sink = sink
        self._index = schema.get_field_index(TXT_URL_COLUMN)

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        urls = batch.column(self._index)
        if not spreadsheet.is_text(urls.type):
            urls = pc.cast(urls, pa.string())
        if urls.null_count:
            raise ValueError(
                f"txt is one URL per line, but {urls.null_count} row(s) have no url: export "
                "this asset as csv or jsonl, or select rows that have one"
            )
        breaks = pc.match_substring_regex(urls, _LINE_BREAKS)
        if pc.any(breaks).as_py():
            bad = urls.filter(breaks)[0].as_py()
            raise ValueError(
                f"txt is one URL per line, but the url {bad[:80]!r} contains a line break"
            )
        joined = pc.binary_join_element_wise(urls, text_scalar("\n"), text_scalar(""))
        _write_text(self._sink, joined.cast(pa.string()))

    def close(self) -> None:
        """Nothing to finish: every line is complete once written."""


# --- parquet --------------------------------------------------------------------------


PARQUET_ROW_GROUP_ROWS = 65_536
"""Rows per Parquet row group (the last one holds the rest): fixed, so a file does not
depend on the size of the batches it was written from, and large enough for column
compression and readers' statistics to pay."""


class ParquetFileWriter:
    """Parquet with the export's typed Arrow schema (timestamps stay UTC microseconds),
    compressed inside the file, in row groups of ``PARQUET_ROW_GROUP_ROWS`` rows: batches
    are held until a row group is full (no other writer holds batches back)."""

    def __init__(self, sink: WriteStream, schema: pa.Schema, *, compression: str = "zstd") -> None:
        import pyarrow.parquet as pq  # with pyarrow.fs, some 4 MiB only Parquet exports need

        self._writer = pq.ParquetWriter(sink, schema, compression=compression)
        self._schema = schema
        self._pending: list[pa.RecordBatch] = []
        self._rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self._pending.append(batch)
        self._rows += batch.num_rows
        while self._rows >= PARQUET_ROW_GROUP_ROWS:
            held = pa.Table.from_batches(self._pending, schema=self._schema)
            self._write_group(held.slice(0, PARQUET_ROW_GROUP_ROWS))
            rest = held.slice(PARQUET_ROW_GROUP_ROWS)
            self._pending, self._rows = rest.to_batches(), rest.num_rows

    def _write_group(self, table: pa.Table) -> None:
        self._writer.write_table(table, row_group_size=PARQUET_ROW_GROUP_ROWS)

    def close(self) -> None:
        if self._rows:
            self._write_group(pa.Table.from_batches(self._pending, schema=self._schema))
            self._pending, self._rows = [], 0
        self._writer.close()


# --- xlsx -----------------------------------------------------------------------------


def _xlsx_cell_values(column: pa.Array, neutralize: bool) -> list[Any]:
    """Python values openpyxl writes as typed cells (text, number, boolean, datetime)."""
    kind = column.type
    if spreadsheet.is_text(kind):
        column = spreadsheet.excel_text(column, neutralize=neutralize)
    elif pa.types.is_floating(kind):
        # Excel has no NaN or infinity: such a cell stays empty.
        column = pc.if_else(pc.is_finite(column), column, null_scalar(kind))
    elif pa.types.is_timestamp(kind):
        # Excel has no time zones: naive datetimes in UTC (the header says so).
        column = pc.cast(column, pa.timestamp(kind.unit))
    elif not (pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_date(kind)):
        # Anything else (lists, structs, binary) as its JSON text.
        column = pc.if_else(pc.is_null(column), None, _json_by_python(column))
    values: list[Any] = column.to_pylist()
    return values


class XlsxWriter:
    """An Excel workbook in openpyxl's write-only mode: a bold header row, typed cells, a new
    sheet every :data:`XLSX_MAX_DATA_ROWS` data rows.

    Cells: numbers as numbers, booleans as booleans, timestamps as naive UTC datetimes
    (Excel has no time zones; the header says ``(UTC)``; Excel keeps milliseconds), text
    with the control characters Excel rejects removed, line ends kept (CR as &#13;), formulas
    neutralised unless turned off (text is always a text cell, never a formula), at most
    32,767 characters (Excel's limit; openpyxl truncates). NaN and infinities are empty.

    Numbers are written as openpyxl writes them, to 16 significant digits (Excel shows 15
    and computes in doubles): integers beyond 10**16 lose their last digits.

    Memory stays bounded: openpyxl streams each sheet's rows to a temporary file on local
    disk; ``close`` zips those into a local temporary file and copies it into ``sink`` (the
    only moment the sink is written). A writer abandoned before ``close`` leaves openpyxl's
    temporary files to openpyxl, which removes them when the process exits.
    """

    def __init__(
        self, sink: WriteStream, schema: pa.Schema, *, neutralize_formulas: bool = True
    ) -> None:
        # openpyxl (~0.2 s and ~200 modules) is imported by xlsx exports only.
        from openpyxl import Workbook
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.cell.cell import ERROR_CODES

        self._cell: Callable[..., Any] = WriteOnlyCell
        self._error_codes: tuple[str, ...] = ERROR_CODES
        self._sink = sink
        self._schema = schema
        self._neutralize = neutralize_formulas
        self._workbook = Workbook(write_only=True)
        self._timestamps = {i for i, f in enumerate(schema) if pa.types.is_timestamp(f.type)}
        self._dates = {i for i, f in enumerate(schema) if pa.types.is_date(f.type)}
        self._texts = {i for i, f in enumerate(schema) if spreadsheet.is_text(f.type)}
        self._sheets = 0
        self._rows_in_sheet = 0
        self._sheet: Any = None
        self._new_sheet()

    def _new_sheet(self) -> None:
        self._sheets += 1
        title = XLSX_SHEET_TITLE if self._sheets == 1 else f"{XLSX_SHEET_TITLE} {self._sheets}"
        self._sheet = self._workbook.create_sheet(title)
        from openpyxl.styles import Font

        bold = Font(bold=True)
        header = []
        for i, name in enumerate(self._schema.names):
            cell = self._cell(self._sheet, f"{name} (UTC)" if i in self._timestamps else name)
            cell.font = bold
            header.append(cell)
        self._sheet.append(header)
        self._rows_in_sheet = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        columns = [_xlsx_cell_values(c, self._neutralize) for c in batch.columns]
        makers = [self._cell_maker(i) for i in range(len(columns))]
        special = [i for i, make in enumerate(makers) if make is not None]
        for row in zip(*columns, strict=True):
            if self._rows_in_sheet >= XLSX_MAX_DATA_ROWS:
                self._new_sheet()
            values: list[Any] = list(row)
            for i in special:
                value = values[i]
                if value is not None:
                    values[i] = makers[i](value)  # type: ignore[misc]
            self._sheet.append(values)
            self._rows_in_sheet += 1

    def _cell_maker(self, index: int) -> Callable[[Any], Any] | None:
        """How to turn a value of a column into a cell, when a plain value will not do."""
        if index in self._timestamps:
            return lambda value: self._formatted(value, XLSX_TIMESTAMP_FORMAT)
        if index in self._dates:
            return lambda value: self._formatted(value, XLSX_DATE_FORMAT)
        if index in self._texts:
            return self._text
        return None

    def _formatted(self, value: Any, number_format: str) -> Any:
        cell = self._cell(self._sheet, value)
        cell.number_format = number_format
        return cell

    def _text(self, value: str) -> Any:
        # openpyxl would store "=..." as a formula and "#N/A" as an error: force text.
        if value[:1] != "=" and value not in self._error_codes:
            return value
        cell = self._cell(self._sheet, value)
        cell.data_type = "s"
        return cell

    def close(self) -> None:
        # Dated 1980-01-01 (properties and zip entries): the same rows give the same bytes.
        spreadsheet.save_reproducible_xlsx(self._workbook, self._sink)
