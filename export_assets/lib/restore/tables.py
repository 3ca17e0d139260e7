"""An export's data file read back as the Arrow table it was written from, by its manifest.

The manifest records every column's Arrow type and nullability, which makes each format
as typed as parquet: csv (pyarrow's reader tells a quoted empty string from an unquoted
null), json and jsonl (timestamps are ISO-8601 text), xlsx (typed cells). What the file
holds must be what the manifest says: the same columns in the same order, the same number
of rows, no null in a column that cannot hold one; anything else is a damaged export.

xlsx is lossy by nature (Excel keeps 15-16 significant digits, milliseconds, no empty
string), and csv/xlsx text cells that looked like a formula were exported behind a ``'``
(``neutralize_formulas``, on by default): that quote is taken off again and counted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from export_assets.lib.exports.readers import seekable_stream
from export_assets.lib.restore.verify import DECOMPRESSION_ERRORS, RestoreError, VerifiedExport

TABLE_FORMATS = ("csv", "jsonl", "json", "parquet", "xlsx")
LOSSY_FORMATS = frozenset({"xlsx"})
NEUTRALIZED_FORMATS = frozenset({"csv", "xlsx"})
# What the exporter's neutralisation made of a formula-like text: ' before = + - @ tab CR.
_NEUTRALIZED = r"^'([=+\-@\t\r])"

_SIMPLE_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "large_string": pa.large_string(),
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "date32[day]": pa.date32(),
}
_TIMESTAMP = re.compile(r"timestamp\[(s|ms|us|ns)(?:, tz=([^\]]+))?\]")


@dataclass(frozen=True)
class ExportTable:
    """The rows of an export, typed as its manifest says, and what reading them noted."""

    table: pa.Table
    unneutralized: int = 0
    """Text values whose leading ``'`` (formula neutralisation) was taken off."""


def manifest_schema(export: VerifiedExport) -> pa.Schema:
    """The Arrow schema the manifest records (names, types, nullability)."""
    fields = []
    for column in export.manifest.columns:
        name, text = column.get("name"), column.get("type")
        kind = _SIMPLE_TYPES.get(str(text))
        if kind is None and (match := _TIMESTAMP.fullmatch(str(text))) is not None:
            kind = pa.timestamp(match.group(1), tz=match.group(2))
        if not isinstance(name, str) or kind is None:
            raise RestoreError(
                f"{export.folder}/_manifest.json records column {name!r} as type {text!r}, "
                "which restore does not read: the manifest is damaged or from a newer "
                "export_assets"
            )
        fields.append(pa.field(name, kind, nullable=bool(column.get("nullable", True))))
    return pa.schema(fields)


def read_export_table(export: VerifiedExport) -> ExportTable:
    """The export's rows as the Arrow table the manifest describes; ``RestoreError`` when
    the file does not parse or does not match its manifest."""
    schema = manifest_schema(export)
    fmt = export.manifest.format
    if fmt not in TABLE_FORMATS:
        raise RestoreError(
            f"{export.folder} is a {fmt} export; restore reads {', '.join(TABLE_FORMATS)}"
        )
    with export.open_plain() as stream:
        try:
            table = _READERS[fmt](stream, schema, export)
        except RestoreError:
            raise
        except DECOMPRESSION_ERRORS:
            raise  # open_plain says the stream is damaged
        except (ValueError, OSError, KeyError, pa.ArrowException) as exc:
            if isinstance(exc.__context__, DECOMPRESSION_ERRORS):
                raise exc.__context__ from None
            raise RestoreError(
                f"{export.data_file} does not parse as {fmt} with the columns its manifest "
                f"records ({exc}): the file is damaged or is not this manifest's; restore "
                "from an intact copy"
            ) from exc
    if table.num_rows != export.manifest.total_rows:
        raise RestoreError(
            f"{export.data_file} holds {table.num_rows} rows, its manifest says "
            f"{export.manifest.total_rows}: the file is damaged or is not this manifest's"
        )
    for field in schema:
        if not field.nullable and table.column(field.name).null_count:
            raise RestoreError(
                f"{export.data_file}: column {field.name} holds "
                f"{table.column(field.name).null_count} empty value(s) where the manifest "
                "says it has none: the file is damaged or is not this manifest's"
            )
    unneutralized = 0
    if fmt in NEUTRALIZED_FORMATS:
        table, unneutralized = _unneutralized(table)
    return ExportTable(table, unneutralized)


def _unneutralized(table: pa.Table) -> tuple[pa.Table, int]:
    """Take the formula-neutralising ``'`` off text values (the manifest does not say
    whether neutralisation was on; it is by default, and a real value starting with ``'=``
    is rarer than one starting with ``=``)."""
    count = 0
    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            marked = pc.fill_null(pc.match_substring_regex(column, _NEUTRALIZED), False)
            found = pc.sum(marked).as_py() or 0
            if found:
                count += found
                column = pc.replace_substring_regex(column, _NEUTRALIZED, r"\1")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=table.schema), count


def _header_mismatch(export: VerifiedExport, found: list[str], schema: pa.Schema) -> RestoreError:
    return RestoreError(
        f"{export.data_file} has the columns {found}, its manifest records {schema.names}: "
        "the file is not this manifest's (or was edited); restore from an intact copy"
    )


def _read_csv(stream: BinaryIO, schema: pa.Schema, export: VerifiedExport) -> pa.Table:
    # Every value is read as text first, so that the header is checked against the
    # manifest before any conversion; then converted with the manifest's types. Only an
    # unquoted empty field is null: the writer quotes every string, "" included.
    text_types = {name: pa.string() for name in schema.names}
    table = pa_csv.read_csv(
        stream,
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types=text_types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    if table.column_names != schema.names:
        raise _header_mismatch(export, table.column_names, schema)
    columns = []
    for field in schema:
        column = table.column(field.name)
        if pa.types.is_timestamp(field.type):
            column = _parse_timestamps(column, field)
        elif not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            column = pc.cast(column, field.type)
        columns.append(column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _parse_timestamps(column: pa.ChunkedArray | pa.Array, field: pa.Field) -> pa.ChunkedArray:
    """ISO-8601 UTC text (``...Z``) as the field's timestamps."""
    naive = pc.replace_substring_regex(column, r"Z$", "")
    unit = field.type.unit
    parsed = pc.cast(naive, pa.timestamp(unit))  # Arrow's ISO-8601 parser
    result = pc.assume_timezone(parsed, field.type.tz) if field.type.tz else parsed
    return pa.chunked_array([result]) if isinstance(result, pa.Array) else result


def _from_records(records: Iterator[Any], schema: pa.Schema, export: VerifiedExport) -> pa.Table:
    names = schema.names
    columns: list[list[Any]] = [[] for _ in names]
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict) or list(record) != names:
            found = list(record) if isinstance(record, dict) else type(record).__name__
            raise RestoreError(
                f"{export.data_file} record {number} has the keys {found}, its manifest "
                f"records {names}: the file is not this manifest's (or was edited)"
            )
        for values, value in zip(columns, record.values(), strict=True):
            values.append(value)
    arrays = []
    for field, values in zip(schema, columns, strict=True):
        if pa.types.is_timestamp(field.type) or pa.types.is_date(field.type):
            text = pa.array(values, pa.string())
            arrays.append(
                _parse_timestamps(text, field).combine_chunks()
                if pa.types.is_timestamp(field.type)
                else pc.cast(text, field.type)
            )
        else:
            arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _read_jsonl(stream: BinaryIO, schema: pa.Schema, export: VerifiedExport) -> pa.Table:
    lines = (json.loads(line) for line in stream if line.strip())
    return _from_records(lines, schema, export)


def _read_json(stream: BinaryIO, schema: pa.Schema, export: VerifiedExport) -> pa.Table:
    records = json.load(stream)
    if not isinstance(records, list):
        raise RestoreError(f"{export.data_file} holds no JSON array of records")
    return _from_records(iter(records), schema, export)


def _read_parquet(stream: BinaryIO, schema: pa.Schema, export: VerifiedExport) -> pa.Table:
    with seekable_stream(stream) as seekable:
        table = pq.read_table(seekable)
    if table.column_names != schema.names:
        raise _header_mismatch(export, table.column_names, schema)
    return table.cast(schema)


def _read_xlsx(stream: BinaryIO, schema: pa.Schema, export: VerifiedExport) -> pa.Table:
    from openpyxl import load_workbook  # only when a workbook is restored

    header = [
        f"{field.name} (UTC)" if pa.types.is_timestamp(field.type) else field.name
        for field in schema
    ]
    columns: list[list[Any]] = [[] for _ in schema]
    with seekable_stream(stream) as seekable:
        workbook = load_workbook(seekable, read_only=True, data_only=True)
        try:
            for sheet in workbook.worksheets:
                rows = sheet.iter_rows(values_only=True)
                found = [str(v) for v in next(rows, ())]
                if found != header:
                    raise _header_mismatch(export, found, schema)
                for row in rows:
                    # Read-only sheets drop a row's trailing empty cells.
                    padded = (*row, *(None for _ in range(len(header) - len(row))))
                    for values, value in zip(columns, padded, strict=True):
                        values.append(value)
        finally:
            workbook.close()
    arrays = []
    for field, values in zip(schema, columns, strict=True):
        if pa.types.is_timestamp(field.type):
            values = [_utc(value) for value in values]
        elif field.type in (pa.string(), pa.large_string()):
            # Excel has no empty string: an empty cell of a column that has no nulls is "".
            empty = None if field.nullable else ""
            values = [empty if value is None else str(value) for value in values]
        arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC)
    return value


_READERS = {
    "csv": _read_csv,
    "jsonl": _read_jsonl,
    "json": _read_json,
    "parquet": _read_parquet,
    "xlsx": _read_xlsx,
}
