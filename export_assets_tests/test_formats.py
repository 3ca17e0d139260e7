"""Formats x codecs: write batches, read back with independent readers, compare to the source.

Independent readers: csv, json, gzip, zipfile, zstandard, pyarrow.parquet, openpyxl. The
writers are driven exactly as the IO manager drives them: a MeasuredStream (which cannot
seek) under the codec, the format writer on top, batch by batch.
"""

import csv
import gzip
import io
import json
import math
import os
import re
import subprocess
import sys
import time
import tracemalloc
import zipfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, get_args

import openpyxl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pydantic
import pytest
import zstandard
from dagster import asset, materialize

from export_assets.defs.exports.config import ExportConfig
from export_assets.lib.exports import codecs, formats, readers
from export_assets.lib.exports.export import (
    INTERNALLY_COMPRESSED,
    Compression,
    CompressionChoice,
    ExportOptions,
    Format,
)
from export_assets.lib.exports.streams import MeasuredStream
from export_assets.lib.sample.hostile import HOSTILE_STRINGS

SCHEMA = pa.schema(
    [
        pa.field("url", pa.string(), nullable=False),
        pa.field("note", pa.string()),
        pa.field("count", pa.int64()),
        pa.field("ratio", pa.float64()),
        pa.field("ok", pa.bool_()),
        pa.field("at", pa.timestamp("us", tz="UTC")),
    ]
)

# Beyond the sample's hostile strings: what else must survive or be neutralised.
EXTRA_STRINGS = (
    "\t=1+1",
    "\r=1+1",
    "\x01=cmd|' /C calc'!A0",  # a leading control character hides a formula in xlsx
    "#N/A",
    "-2",
    "nul \x00 byte",
    "noncharacters \ufffe \uffff",
    "",
    None,
)
NOTES: tuple[str | None, ...] = (*HOSTILE_STRINGS, *EXTRA_STRINGS)
FLOATS = (1.5, None, math.nan, math.inf, -math.inf, 1e20, -0.0, 0.1, 123456789.12345679, 5e-324)
BASE = datetime(2026, 11, 1, 23, 59, 58, 999_999, tzinfo=UTC)

FORMATS: tuple[Format, ...] = get_args(Format)
COMPRESSIONS: tuple[Compression, ...] = get_args(Compression)
COMBINATIONS = [
    (f, c) for f in FORMATS for c in COMPRESSIONS if f not in INTERNALLY_COMPRESSED or c == "none"
]
COMBINATION_IDS = [f"{f}-{c}" for f, c in COMBINATIONS]

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
EXCEL_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def source_rows() -> list[dict[str, Any]]:
    rows = []
    for i, note in enumerate(NOTES):
        rows.append(
            {
                "url": f"http://proxy-{i}.example:{8000 + i}",
                "note": note,
                "count": None if i % 7 == 3 else (i - 5) * 1_000_000_007,
                "ratio": FLOATS[i % len(FLOATS)],
                "ok": (True, False, None)[i % 3],
                "at": None if i % 9 == 4 else BASE + timedelta(microseconds=1_234_567 * i),
            }
        )
    return rows


def source_batches(
    rows: Sequence[dict[str, Any]], schema: pa.Schema = SCHEMA
) -> Iterator[pa.RecordBatch]:
    """A few batches, one of them empty, as a source would yield them."""
    yield pa.RecordBatch.from_pylist(list(rows[:7]), schema=schema)
    yield pa.RecordBatch.from_pylist([], schema=schema)
    yield pa.RecordBatch.from_pylist(list(rows[7:]), schema=schema)


def write(
    fmt: Format,
    compression: Compression,
    batches: Iterator[pa.RecordBatch] | None = None,
    schema: pa.Schema = SCHEMA,
    **settings: Any,
) -> bytes:
    """Write an export as the IO manager does and return the file's bytes."""
    options = ExportOptions(format=fmt, compression=compression, **settings)
    sink = io.BytesIO()
    stored = MeasuredStream(sink, hashed=True)
    entry = f"export-2026-11-01{formats.EXTENSIONS[fmt]}"
    with codecs.compressed(stored, options, entry_name=entry) as stream:
        writer = formats.open_format_writer(MeasuredStream(stream), schema, options)
        for batch in source_batches(source_rows()) if batches is None else batches:
            writer.write(batch)
        writer.close()
    return sink.getvalue()


@cache
def written(fmt: Format, compression: Compression) -> bytes:
    return write(fmt, compression)


def decompress(compression: Compression, data: bytes) -> bytes:
    if compression == "gzip":
        return gzip.decompress(data)
    if compression == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    if compression == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            (name,) = archive.namelist()
            return archive.read(name)
    return data


# --- what each format promises about values -------------------------------------------


def neutralized(text: str | None) -> str | None:
    return "'" + text if text and text.startswith(FORMULA_START) else text


def excel_text(text: str | None, neutralize: bool = True) -> str | None:
    if text is None:
        return None
    text = EXCEL_ILLEGAL.sub("", text)
    if neutralize:
        text = neutralized(text) or ""
    # Line ends are kept: openpyxl (through lxml) writes CR as &#13;, which reads back as CR.
    return text or None  # an empty cell reads back as None


def excel_number(value: float | None) -> float | int | None:
    """A float as it reads back from xlsx: 16 significant digits (Excel shows 15), and
    whole numbers without a point (-0.0 is 0)."""
    if value is None:
        return None
    text = "%.16g" % value  # noqa: UP031 (openpyxl's format)
    return float(text) if any(c in text for c in ".eE") else int(text)


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)


def same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(actual, float) and math.isnan(actual)
    return bool(actual == expected and type(actual) is type(expected))


def assert_rows(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(actual) == len(expected)
    for number, (got, want) in enumerate(zip(actual, expected, strict=True)):
        assert list(got) == list(want), number
        for key in want:
            assert same(got[key], want[key]), (number, key, got[key], want[key])


def read_back(fmt: Format, data: bytes) -> list[dict[str, Any]]:
    """Rows as Python values through an independent reader of ``fmt``."""
    if fmt == "csv":
        text = data.decode("utf-8")
        records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
        assert records[0] == SCHEMA.names
        return [
            {
                "url": url,
                "note": note,
                "count": int(count) if count else None,
                "ratio": float(ratio) if ratio else None,
                "ok": {"true": True, "false": False, "": None}[ok],
                "at": utc(at) if at else None,
            }
            for url, note, count, ratio, ok, at in records[1:]
        ]
    if fmt in ("jsonl", "json"):
        text = data.decode("utf-8")
        if fmt == "jsonl":
            assert text.endswith("\n")
            objects = [json.loads(line) for line in text.split("\n")[:-1]]
        else:
            objects = list(json.loads(text))
        for row in objects:
            row["at"] = utc(row["at"]) if row["at"] is not None else None
        return objects
    if fmt == "parquet":
        table = pq.read_table(io.BytesIO(data))
        assert table.schema.equals(SCHEMA), table.schema
        rows: list[dict[str, Any]] = table.to_pylist()
        return rows
    if fmt == "xlsx":
        workbook = openpyxl.load_workbook(io.BytesIO(data))
        rows = []
        for sheet in workbook.worksheets:
            values = list(sheet.iter_rows(values_only=True))
            assert list(values[0]) == ["url", "note", "count", "ratio", "ok", "at (UTC)"]
            assert all(cell.font.b for cell in sheet[1])
            rows += [dict(zip(SCHEMA.names, row, strict=True)) for row in values[1:]]
        return rows
    raise AssertionError(fmt)


def expected_rows(fmt: Format, neutralize: bool = True) -> list[dict[str, Any]]:
    rows = source_rows()
    if fmt == "csv":
        for row in rows:
            row["note"] = (neutralized(row["note"]) if neutralize else row["note"]) or ""
    elif fmt in ("jsonl", "json"):
        for row in rows:
            row["ratio"] = finite(row["ratio"])
    elif fmt == "xlsx":
        for row in rows:
            row["note"] = excel_text(row["note"], neutralize)
            row["ratio"] = excel_number(finite(row["ratio"]))
            if row["at"] is not None:  # naive UTC, to the millisecond
                at = row["at"].replace(tzinfo=None)
                row["at"] = at + timedelta(microseconds=round(at.microsecond, -3) - at.microsecond)
    return rows


# --- every format x codec -------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "compression"), COMBINATIONS, ids=COMBINATION_IDS)
def test_every_format_and_codec_reads_back_the_source_rows(
    fmt: Format, compression: Compression
) -> None:
    data = decompress(compression, written(fmt, compression))
    if fmt == "txt":
        assert data.decode("utf-8") == "".join(f"{r['url']}\n" for r in source_rows())
    else:
        assert_rows(read_back(fmt, data), expected_rows(fmt))


@pytest.mark.parametrize(("fmt", "compression"), COMBINATIONS, ids=COMBINATION_IDS)
def test_every_format_and_codec_is_reproducible(
    fmt: Format, compression: Compression, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write(fmt, compression)
    # A day later on the wall clock: nothing may depend on the time of writing.
    later = time.time() + 86_400 + 7
    monkeypatch.setattr(time, "time", lambda: later)
    assert write(fmt, compression) == first


@pytest.mark.parametrize(("fmt", "compression"), COMBINATIONS, ids=COMBINATION_IDS)
def test_count_rows_parses_every_format_and_codec(fmt: Format, compression: Compression) -> None:
    data = written(fmt, compression)
    assert readers.count_rows(fmt, compression, io.BytesIO(data)) == len(NOTES)
    unseekable = io.BufferedReader(_Unseekable(data))
    assert readers.count_rows(fmt, compression, unseekable) == len(NOTES)


class _Unseekable(io.RawIOBase):
    """A readable stream that cannot seek, like an S3 response body."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._data.readinto(buffer)


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_empty_export_is_a_valid_file_of_its_format(fmt: Format) -> None:
    data = write(fmt, "none", iter([pa.RecordBatch.from_pylist([], schema=SCHEMA)]))
    assert readers.count_rows(fmt, "none", io.BytesIO(data)) == 0
    if fmt == "json":
        assert data == b"[]"
    elif fmt in ("jsonl", "txt"):
        assert data == b""
    elif fmt != "txt":
        assert read_back(fmt, data) == []


def test_json_and_jsonl_text_is_exact() -> None:
    row = {
        "url": "http://a:1",
        "note": 'é "q" \\ \n\x01 😀',
        "count": -3,
        "ratio": 1.0,
        "ok": False,
        "at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    }
    nulls = {
        "url": "http://b:2",
        "note": None,
        "count": None,
        "ratio": math.nan,
        "ok": None,
        "at": None,
    }
    line = (
        '{"url":"http://a:1","note":"é \\"q\\" \\\\ \\n\\u0001 😀","count":-3,"ratio":1.0,'
        '"ok":false,"at":"2026-01-02T03:04:05.000006Z"}'
    )
    empty = '{"url":"http://b:2","note":null,"count":null,"ratio":null,"ok":null,"at":null}'
    batches = [pa.RecordBatch.from_pylist([row], schema=SCHEMA)]
    both = [pa.RecordBatch.from_pylist([row, nulls], schema=SCHEMA)]
    assert write("jsonl", "none", iter(both)) == f"{line}\n{empty}\n".encode()
    assert write("json", "none", iter(batches)) == f"[\n{line}\n]".encode()
    assert (
        write("json", "none", iter(both + batches)) == f"[\n{line},\n{empty},\n{line}\n]".encode()
    )


def test_csv_timestamps_are_iso_utc_and_numbers_stay_unquoted() -> None:
    text = decompress("gzip", written("csv", "gzip")).decode()
    first = text.splitlines()[1]
    assert first.startswith('"http://proxy-0.example:8000","\'=HYPERLINK(')
    assert first.endswith(',-5000000035,1.5,true,"2026-11-01T23:59:58.999999Z"')


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize(("before", "after"), [("", ""), ('"', '"')])
def test_iso_utc_text_is_the_same_whichever_way_it_is_built(
    unit: str, before: str, after: str
) -> None:
    moments = [
        datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
        datetime(2026, 11, 1, 23, 59, 58, 999999, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2000, 2, 29, 6, 7, 8, 9, tzinfo=UTC),
        datetime(1700, 1, 1, tzinfo=UTC),
        datetime(2262, 1, 1, tzinfo=UTC),
    ]
    if unit != "ns":  # beyond nanoseconds' range
        moments += [datetime(999, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)]
    kind = pa.timestamp(unit, "UTC")
    column = pa.array(moments * 50, type=kind)
    per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    # Year 10000 prints one character wider: values of two widths.
    two_widths = pa.array([253402300800 * per_second, 0] if unit != "ns" else [0], type=kind)
    cases = {
        "whole": column,
        "a slice": column.slice(7, 100),
        "with nulls": pa.array([moments[0], None, moments[1]], type=kind),
        "two widths": two_widths,
        "empty": column.slice(0, 0),
    }
    for name, case in cases.items():
        text = pc.cast(pc.cast(case, pa.timestamp(unit)), pa.string())
        general = formats._framed(text, before, after)
        built = formats.iso_utc(case, before, after)
        assert built.equals(general), name
        assert built.type == pa.string()
    grid = formats._framed_fixed_width(
        pc.cast(pc.cast(column, pa.timestamp(unit)), pa.string()), before, after
    )
    assert grid is not None  # the common case takes the grid
    assert grid.to_pylist()[0] == f"{before}2026-11-01T12:00:00{_fraction(unit)}Z{after}"
    for name in ("with nulls", "two widths"):
        text = pc.cast(pc.cast(cases[name], pa.timestamp(unit)), pa.string())
        if name == "with nulls" or unit != "ns":
            assert formats._framed_fixed_width(text, before, after) is None, name


def _fraction(unit: str) -> str:
    return {"s": "", "ms": ".000", "us": ".000000", "ns": ".000000000"}[unit]


# --- spreadsheet safety ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_formula_neutralisation_can_be_turned_off(fmt: Format) -> None:
    data = write(fmt, "none", neutralize_formulas=False)
    assert_rows(read_back(fmt, data), expected_rows(fmt, neutralize=False))
    if fmt == "xlsx":
        sheet = openpyxl.load_workbook(io.BytesIO(data)).worksheets[0]
        formula = sheet.cell(row=2, column=2)
        assert formula.value.startswith("=HYPERLINK(")
        assert formula.data_type == "s"  # text, never a live formula
        assert sheet.cell(row=2, column=3).data_type == "n"


def test_neutralisation_touches_text_only() -> None:
    data = write("xlsx", "none")
    sheet = openpyxl.load_workbook(io.BytesIO(data)).worksheets[0]
    notes = [row[1] for row in sheet.iter_rows(min_row=2, values_only=True)]
    counts = [row[2] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert "'-2" in notes
    assert "'\t=1+1" in notes
    assert "'=cmd|' /C calc'!A0" in notes  # control character removed, then neutralised
    assert "#N/A" in notes
    assert -5000000035 in counts


def test_xlsx_keeps_line_ends_and_says_how_in_the_sheet_xml() -> None:
    data = write("xlsx", "none")
    notes = [row["note"] for row in read_back("xlsx", data)]
    assert "windows\r\nline ending" in notes
    assert "carriage\rreturn only" in notes
    assert "'\r=1+1" in notes  # a leading CR still hides a formula: neutralised, CR kept
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        xml = archive.read("xl/worksheets/sheet1.xml").decode()
    assert "windows&#13;\nline ending" in xml


def test_xlsx_without_lxml_writes_line_ends_as_lf() -> None:
    """openpyxl's fallback writer (OPENPYXL_LXML=False) leaves CR literal, which every XML
    parser reads as LF: the export then writes LF itself, so the file says what it holds."""
    script = (
        "import io, sys, openpyxl, pyarrow as pa\n"
        "from export_assets.lib.exports import formats\n"
        "assert not openpyxl.xml.LXML\n"
        "schema = pa.schema([pa.field('note', pa.string())])\n"
        "sink = io.BytesIO()\n"
        "writer = formats.XlsxWriter(sink, schema)\n"
        "writer.write(pa.record_batch([pa.array(['a\\r\\nb', 'c\\rd'])], schema=schema))\n"
        "writer.close()\n"
        "sys.stdout.buffer.write(sink.getvalue())\n"
    )
    env = {**os.environ, "OPENPYXL_LXML": "False"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, check=True, timeout=60
    )
    sheet = openpyxl.load_workbook(io.BytesIO(done.stdout)).worksheets[0]
    assert [row[0] for row in sheet.iter_rows(min_row=2, values_only=True)] == ["a\nb", "c\nd"]
    with zipfile.ZipFile(io.BytesIO(done.stdout)) as archive:
        assert b"\r" not in archive.read("xl/worksheets/sheet1.xml")


def test_xlsx_starts_a_new_sheet_at_the_row_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "XLSX_MAX_DATA_ROWS", 5)
    data = write("xlsx", "none")
    workbook = openpyxl.load_workbook(io.BytesIO(data))
    sizes = [sheet.max_row - 1 for sheet in workbook.worksheets]
    assert workbook.sheetnames == ["data", "data 2", "data 3", "data 4", "data 5", "data 6"]
    assert sizes == [5, 5, 5, 5, 5, len(NOTES) - 25]
    assert_rows(read_back("xlsx", data), expected_rows("xlsx"))
    assert readers.count_rows("xlsx", "none", io.BytesIO(data)) == len(NOTES)


# --- codec details --------------------------------------------------------------------


def test_codec_headers_hold_no_time_or_name() -> None:
    data = written("csv", "gzip")
    assert data[3] == 0  # no FNAME flag
    assert data[4:8] == b"\0\0\0\0"  # mtime 0
    with zipfile.ZipFile(io.BytesIO(written("jsonl", "zip"))) as archive:
        (entry,) = archive.infolist()
    assert entry.filename == "export-2026-11-01.jsonl"
    assert entry.date_time == (1980, 1, 1, 0, 0, 0)
    assert entry.compress_type == zipfile.ZIP_DEFLATED
    frame = zstandard.get_frame_parameters(written("csv", "zstd"))
    assert frame.content_size == zstandard.CONTENTSIZE_UNKNOWN
    assert frame.has_checksum
    assert codecs.EXTENSIONS == {"none": "", "gzip": ".gz", "zstd": ".zst", "zip": ".zip"}


def test_parquet_keeps_types_and_says_nothing_of_the_moment() -> None:
    parquet = pq.ParquetFile(io.BytesIO(written("parquet", "none")))
    assert parquet.schema_arrow.equals(SCHEMA)
    assert parquet.metadata.created_by.startswith("parquet-cpp-arrow version ")
    assert set(parquet.metadata.metadata or {}) == {b"ARROW:schema"}
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    snappy = pq.ParquetFile(io.BytesIO(write("parquet", "none", parquet_compression="snappy")))
    assert snappy.metadata.row_group(0).column(0).compression == "SNAPPY"


# --- bad input ------------------------------------------------------------------------


def test_txt_needs_a_url_column() -> None:
    schema = pa.schema([("host", pa.string())])
    message = "txt is for proxy lists: one URL per line; this export has no url column"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}") as raised:
        write("txt", "gzip", iter([]), schema=schema)
    assert "(its columns: host)" in str(raised.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (None, "1 row\\(s\\) have no url"),
        ("http://a\n:1", "contains a line break"),
        ("http://a\u2028:1", "contains a line break"),
    ],
)
def test_txt_refuses_what_is_not_one_url_per_line(url: str | None, message: str) -> None:
    batch = pa.RecordBatch.from_pylist([{"url": url}], schema=pa.schema([("url", pa.string())]))
    with pytest.raises(ValueError, match=message):
        write("txt", "none", iter([batch]), schema=batch.schema)


@pytest.mark.parametrize(
    ("fmt", "compression"), [("parquet", "gzip"), ("xlsx", "zip"), ("parquet", "zstd")]
)
def test_an_outer_codec_on_parquet_or_xlsx_is_a_config_error(
    fmt: Format, compression: Compression
) -> None:
    message = f"{fmt} compresses internally .*; set compression to none"
    with pytest.raises(pydantic.ValidationError, match=message):
        ExportConfig(format=fmt, compression=compression)
    with pytest.raises(ValueError, match=message):
        ExportOptions(format=fmt, compression=compression)


BAD_CONFIG = {"format": "parquet", "compression": "gzip"}


def test_a_bad_run_config_fails_before_the_asset_runs() -> None:
    ran = []

    @asset
    def configured(config: ExportConfig) -> None:
        ran.append(config)

    result = materialize(
        [configured],
        run_config={"ops": {"configured": {"config": BAD_CONFIG}}},
        raise_on_error=False,
    )
    assert not result.success
    assert ran == []
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None
    assert "parquet compresses internally (parquet_compression); set compression to none" in str(
        failure.to_string()
    )


def test_config_resolves_the_format_default_codec_and_carries_every_option() -> None:
    assert ExportConfig().options() == ExportOptions(format="csv", compression="gzip")
    assert ExportConfig(format="parquet").options().compression == "none"
    assert ExportConfig(format="xlsx", compression="none").options().compression == "none"
    options = ExportConfig(
        format="jsonl",
        compression="zstd",
        zstd_level=9,
        gzip_level=1,
        parquet_compression="snappy",
        neutralize_formulas=False,
        fields=["url", "host"],
    ).options()
    assert options == ExportOptions(
        format="jsonl",
        compression="zstd",
        zstd_level=9,
        gzip_level=1,
        parquet_compression="snappy",
        neutralize_formulas=False,
        fields=("url", "host"),
    )
    assert [c.value for c in CompressionChoice] == list(COMPRESSIONS)
    with pytest.raises(pydantic.ValidationError, match="fields lists 'url' twice"):
        ExportConfig(fields=["url", "url"])
    with pytest.raises(pydantic.ValidationError, match="fields is empty"):
        ExportConfig(fields=[])


CORRUPT: list[tuple[Format, Compression, bytes, str]] = [
    ("csv", "none", b"a,b\n1,2,3\n", "csv record 1 has 3 fields, the header 2"),
    ("csv", "none", b'a,b\n"1,2\n', "csv is not valid CSV"),
    ("csv", "none", b"a,b\n\xff,1\n", "csv is not UTF-8"),
    ("csv", "none", b"", "csv has no header row"),
    ("jsonl", "none", b'{"a": 1}\n{"a":\n', "jsonl line 2 is not JSON"),
    ("jsonl", "none", b'{"a": 1}\n[1]\n', "jsonl line 2 is a list, not a JSON object"),
    ("jsonl", "none", b'{"a": NaN}\n', "jsonl line 1 is not JSON: NaN is not a JSON value"),
    ("json", "none", b'[{"a": -Infinity}]', "json element 1 is not JSON: -Infinity is not a"),
    ("csv", "zstd", b"", "csv+zstd holds no zstd frame"),
    ("csv", "gzip", b"not gzip", "csv+gzip does not decompress: Not a gzipped file"),
    ("csv", "zip", b"not zip", "csv+zip is not a zip archive"),
    ("jsonl", "none", b'{"a": 1}', "jsonl line 1 is not terminated"),
    ("json", "none", b'[\n{"a": 1},\n{"a": 2}', "json element 2 is not followed"),
    ("json", "none", b'[{"a": 1},]', "json element 2 is not JSON"),
    ("json", "none", b'"a string"', "json does not start with a JSON array"),
    ("json", "none", b'{"a": 1', "json document is not JSON"),
    ("json", "none", b'[{"a": 1}] {}', "json has data after its array"),
    ("json", "none", b"[1]", "json element 1 is a int, not an object"),
    ("txt", "none", b"http://a:1\nhttp://b:2", "txt line 2 is not terminated"),
    ("txt", "none", b"http://a:1\n\xff\n", "txt line 2 is not UTF-8"),
    ("parquet", "none", b"PAR1 not really PAR1", "parquet is not a readable parquet file"),
    ("xlsx", "none", b"PK\x03\x04 not a workbook", "xlsx is not a readable xlsx workbook"),
]


@pytest.mark.parametrize(("fmt", "compression", "data", "message"), CORRUPT)
def test_count_rows_names_what_does_not_parse(
    fmt: Format, compression: Compression, data: bytes, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        readers.count_rows(fmt, compression, io.BytesIO(data))


@pytest.mark.parametrize(("fmt", "compression"), COMBINATIONS, ids=COMBINATION_IDS)
def test_count_rows_rejects_a_truncated_file(fmt: Format, compression: Compression) -> None:
    data = written(fmt, compression)
    if compression == "none" and fmt in ("csv", "jsonl", "txt"):
        data = data[:-1]  # a line-based file cut anywhere else may still be a valid shorter file
        if fmt == "csv":
            data = data[: data.rindex(b'"')]  # inside a quoted field
    else:
        data = data[: len(data) // 2]
    with pytest.raises(ValueError, match=f"^{fmt}"):
        readers.count_rows(fmt, compression, io.BytesIO(data))


def test_count_rows_of_a_zip_with_two_entries_is_an_error() -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("a.csv", "x\n1\n")
        zipped.writestr("b.csv", "x\n1\n")
    with pytest.raises(ValueError, match="csv\\+zip holds 2 entries"):
        readers.count_rows("csv", "zip", io.BytesIO(archive.getvalue()))


def test_the_json_reader_finds_elements_across_chunk_boundaries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(readers, "_CHUNK", 7)
    assert readers.count_rows("json", "gzip", io.BytesIO(written("json", "gzip"))) == len(NOTES)
    assert readers.count_rows("jsonl", "zstd", io.BytesIO(written("jsonl", "zstd"))) == len(NOTES)
    number = b"[\n" + b",\n".join([b'{"n": 12345678901234}'] * 9) + b"\n]"
    assert readers.count_rows("json", "none", io.BytesIO(number)) == 9


# --- memory ---------------------------------------------------------------------------


class _Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return memoryview(data).nbytes


def _validation_like(rows: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "proxy_url": pa.array([f"http://10.0.{i % 250}.{i % 199}:8080" for i in range(rows)]),
            "validated_at": pa.array(
                [1_790_000_000_000_000 + i * 1000 for i in range(rows)], pa.timestamp("us", "UTC")
            ),
            "is_valid": pa.array([i % 3 != 0 for i in range(rows)]),
            "response_time_ms": pa.array([float(i % 997) / 3 for i in range(rows)]),
        }
    )


def _fresh_batches(batch: pa.RecordBatch, total_rows: int) -> Iterator[pa.RecordBatch]:
    """``total_rows`` rows in new batches (each allocated anew, as a source reads them)."""
    day = pa.scalar(86_400_000_000, pa.duration("us"))
    for _ in range(total_rows // batch.num_rows):
        later = pc.add(batch.column(1), day)
        batch = batch.set_column(1, batch.schema.field(1), later)
        yield batch


def _write_jsonl_gzip(batch: pa.RecordBatch, total_rows: int) -> None:
    options = ExportOptions(format="jsonl", compression="gzip", gzip_level=1)
    with codecs.compressed(_Discard(), options, entry_name="x.jsonl") as stream:
        writer = formats.open_format_writer(stream, batch.schema, options)
        for fresh in _fresh_batches(batch, total_rows):
            writer.write(fresh)
        writer.close()


# Kept alive for the whole session: a pool must outlive every buffer it allocated.
_POOLS: list[pa.MemoryPool] = []


def _peak_memory(total_rows: int, batch: pa.RecordBatch) -> tuple[int, int]:
    """Peak Python (tracemalloc) and Arrow (a fresh pool) bytes while writing ``total_rows``."""
    previous = pa.default_memory_pool()
    pool = pa.proxy_memory_pool(previous)
    _POOLS.append(pool)
    pa.set_memory_pool(pool)
    tracemalloc.start()
    try:
        _write_jsonl_gzip(batch, total_rows)
        return tracemalloc.get_traced_memory()[1], pool.max_memory() or 0
    finally:
        tracemalloc.stop()
        pa.set_memory_pool(previous)


def test_memory_does_not_grow_with_rows() -> None:
    batch = _validation_like(50_000)
    small_python, small_arrow = _peak_memory(200_000, batch)
    large_python, large_arrow = _peak_memory(1_000_000, batch)
    margin = 2 * 1024 * 1024
    assert large_python <= small_python * 1.1 + margin, (small_python, large_python)
    assert large_arrow <= small_arrow * 1.1 + margin, (small_arrow, large_arrow)


def test_parquet_row_groups_do_not_depend_on_the_batches() -> None:
    rows = formats.PARQUET_ROW_GROUP_ROWS * 2 + 1000
    ids = pa.array(range(rows), pa.int64())
    table = pa.table(
        {"id": ids, "url": pc.binary_join_element_wise("u", pc.cast(ids, pa.string()), "")}
    )

    def parquet(batch_rows: int) -> bytes:
        out = io.BytesIO()
        writer = formats.ParquetFileWriter(out, table.schema)
        for batch in table.to_batches(max_chunksize=batch_rows):
            writer.write(batch)
            writer.write(batch.slice(0, 0))  # an empty batch adds nothing
        writer.close()
        return out.getvalue()

    small, large = parquet(5000), parquet(rows)
    assert small == large
    metadata = pq.ParquetFile(io.BytesIO(small)).metadata
    groups = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert groups == [formats.PARQUET_ROW_GROUP_ROWS] * 2 + [1000]
    assert pq.read_table(io.BytesIO(small)).equals(table)
