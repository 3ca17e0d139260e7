"""The fast paths of a big export give exactly what the plain paths give.

- validation_events read through ADBC into Arrow equals the sqlite3 row reader's batches
  (same values, nulls, timestamps and batch boundaries), filtered or not, and a WAL
  database is read through the snapshot's own connection;
- masking ``user:pass@`` where a byte search finds an ``@`` equals masking each value;
- the block-parallel gzip is one standard gzip stream (mtime 0) that gzip, zlib and
  DuckDB read, with the same bytes whatever the number of threads.
"""

from __future__ import annotations

import gzip
import io
import shutil
import sqlite3
import struct
import subprocess
import zlib
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from export_assets.lib.exports.codecs import ParallelGzipWriter
from export_assets.lib.sample import SampleDeployment
from export_assets.lib.security.credentials import mask_url_credentials, mask_url_credentials_array
from export_assets.lib.source import SourceError, SourceSnapshot
from export_assets.lib.source import validations as v
from export_assets_tests.conftest import SAMPLE_DAYS, SAMPLE_END

DAYS = [SAMPLE_END - timedelta(days=n) for n in range(SAMPLE_DAYS)]


def _both_ways(
    database: Path, day: date, filters: v.ValidationFilters, batch_rows: int
) -> tuple[list[pa.RecordBatch], list[pa.RecordBatch]]:
    with SourceSnapshot(database, busy_timeout_ms=5000, batch_rows=batch_rows) as snapshot:
        ids = v.validation_id_range(snapshot, day, filters)
        assert ids is not None
        fast = list(v.validation_events(snapshot, day, ids, filters))
        rows = list(v._events_by_rows(snapshot, day, ids, filters))
    return fast, rows


@pytest.mark.parametrize(
    "filters",
    [
        v.NO_FILTERS,
        v.ValidationFilters(is_valid=False),
        v.ValidationFilters(error_types=("timeout", "ssl_error")),
    ],
)
def test_the_arrow_reader_gives_the_row_readers_batches(
    sample_deployment: SampleDeployment, filters: v.ValidationFilters
) -> None:
    for day in DAYS:
        fast, rows = _both_ways(sample_deployment.database, day, filters, batch_rows=97)
        assert [b.num_rows for b in fast] == [b.num_rows for b in rows]
        assert sum(b.num_rows for b in fast) > 0
        for mine, theirs in zip(fast, rows, strict=True):
            assert mine.schema.equals(v.VALIDATION_EVENTS_SCHEMA)
            assert mine.equals(theirs)


def _copy_with(source: Path, tmp_path: Path, sql: str, *parameters: object) -> Path:
    database = tmp_path / "proxies.db"
    shutil.copy(source, database)
    with sqlite3.connect(database) as connection:
        connection.execute(sql, parameters)
    connection.close()
    return database


def _day_ids(database: Path) -> list[int]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        ids = [
            row[0]
            for row in connection.execute(
                "SELECT id FROM validation_results WHERE validated_at >= ? ORDER BY id",
                (SAMPLE_END.isoformat(),),
            )
        ]
    connection.close()
    return ids


@pytest.mark.parametrize("position", [0, 120])  # in the first batch, in a later one
def test_values_proxywhirl_never_writes_take_the_row_reader(
    sample_deployment: SampleDeployment, tmp_path: Path, position: int
) -> None:
    target = _day_ids(sample_deployment.database)[position]
    database = _copy_with(
        sample_deployment.database,
        tmp_path,
        "UPDATE validation_results SET is_valid = 2 WHERE id = ?",
        target,
    )
    fast, rows = _both_ways(database, SAMPLE_END, v.NO_FILTERS, batch_rows=50)
    assert [b.num_rows for b in fast] == [b.num_rows for b in rows]
    assert pa.Table.from_batches(fast).equals(pa.Table.from_batches(rows))


def test_a_range_that_starts_without_errors_is_read_by_the_arrow_reader(
    sample_deployment: SampleDeployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A morning of successes: the first 120 results of the day have no error and no
    latency (NULL), the later ones have both; the driver still types those columns right
    (no fall back to the row reader) and the values are the row reader's."""
    first = _day_ids(sample_deployment.database)[:120]
    database = _copy_with(
        sample_deployment.database,
        tmp_path,
        "UPDATE validation_results SET error_type = NULL, error_message = NULL,"
        " response_time_ms = NULL WHERE id >= ? AND id <= ?",
        first[0],
        first[-1],
    )
    rows = _both_ways(database, SAMPLE_END, v.NO_FILTERS, batch_rows=50)[1]
    later = pa.Table.from_batches(rows).column("error_type").slice(120)
    assert later.null_count < len(later)  # errors after the morning

    def no_row_reader(*_: object) -> Iterator[pa.RecordBatch]:
        raise AssertionError("the range fell back to the row reader")

    monkeypatch.setattr(v, "_row_range", no_row_reader)
    with SourceSnapshot(database, busy_timeout_ms=5000, batch_rows=50) as snapshot:
        ids = v.validation_id_range(snapshot, SAMPLE_END)
        fast = list(v.validation_events(snapshot, SAMPLE_END, ids))
    assert pa.Table.from_batches(fast).equals(pa.Table.from_batches(rows))


@pytest.mark.parametrize("position", [0, 120])
def test_a_latency_that_is_text_is_named_wherever_it_is(
    sample_deployment: SampleDeployment, tmp_path: Path, position: int
) -> None:
    target = _day_ids(sample_deployment.database)[position]
    database = _copy_with(
        sample_deployment.database,
        tmp_path,
        "UPDATE validation_results SET response_time_ms = 'fast' WHERE id = ?",
        target,
    )
    with SourceSnapshot(database, busy_timeout_ms=5000, batch_rows=50) as snapshot:
        events = v.validation_events(
            snapshot, SAMPLE_END, v.validation_id_range(snapshot, SAMPLE_END)
        )
        with pytest.raises(SourceError, match="response_time_ms holds a value that is not double"):
            list(events)


def test_a_wal_database_is_read_through_the_snapshot(
    sample_deployment: SampleDeployment, tmp_path: Path
) -> None:
    database = tmp_path / "proxies.db"
    shutil.copy(sample_deployment.database, database)
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
    connection.close()
    fast, rows = _both_ways(database, SAMPLE_END, v.NO_FILTERS, batch_rows=100)
    assert pa.Table.from_batches(fast).equals(pa.Table.from_batches(rows))
    plain, _ = _both_ways(sample_deployment.database, SAMPLE_END, v.NO_FILTERS, 100)
    assert pa.Table.from_batches(fast).equals(pa.Table.from_batches(plain))


def test_masking_where_a_byte_search_finds_an_at_sign_masks_as_each_value_would() -> None:
    values = [f"http://10.0.0.{n}:80" for n in range(300)] + [
        "see socks5://alice:hunter22@10.0.0.1:1080 now",
        "http://***:***@10.0.0.2:80",
        "mail me: ops@example.com",
        None,
        "",
        "https://u:p@a@b/c and x@y",
    ] * 3
    array = pa.array(values)
    expected = [None if value is None else mask_url_credentials(value) for value in values]
    for start, length in ((0, len(values)), (5, len(values) - 5), (301, 7), (0, 300)):
        piece = array.slice(start, length)
        wanted = expected[start : start + length]
        assert mask_url_credentials_array(piece).to_pylist() == wanted
        wide = piece.cast(pa.large_string())  # not a plain string array: each value is asked
        assert mask_url_credentials_array(wide).to_pylist() == wanted
    # Nothing to mask (masked already, or an @ outside a URL): the same array, not a copy.
    clean = pa.array(["http://***:***@10.0.0.2:80", "ops@example.com", None, "plain"])
    assert mask_url_credentials_array(clean) is clean
    # A null whose slot spans bytes holding an @ (Arrow allows it) stays null.
    data = b"http://a:b@h" + b"socks5://c:d@e"
    spanning = pa.Array.from_buffers(
        pa.string(),
        2,
        [
            pa.py_buffer(bytes([0b10])),
            pa.py_buffer(struct.pack("<iii", 0, 12, 26)),
            pa.py_buffer(data),
        ],
    )
    assert mask_url_credentials_array(spanning).to_pylist() == [None, "socks5://***:***@e"]


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _gzip(data: bytes, *, threads: int, block_bytes: int = 4096, level: int = 6) -> bytes:
    sink = io.BytesIO()
    with ParallelGzipWriter(sink, level, threads=threads, block_bytes=block_bytes) as stream:
        for chunk in _chunks(data, 1000):  # writes that do not line up with the blocks
            stream.write(chunk)
    return sink.getvalue()


@pytest.mark.parametrize("size", [0, 1, 4096, 4097, 50_000])
def test_parallel_gzip_is_one_standard_stream_whatever_the_threads(
    size: int, tmp_path: Path
) -> None:
    data = b"".join(f"{n},proxy-{n % 7},{n * 1.5}\n".encode() for n in range(size))[:size]
    one, three = _gzip(data, threads=1), _gzip(data, threads=3)
    assert one == three
    assert one[:4] == b"\x1f\x8b\x08\x00"
    assert one[4:8] == b"\x00\x00\x00\x00"  # mtime 0
    assert gzip.decompress(one) == data
    assert zlib.decompress(one, wbits=31) == data
    unzipped = subprocess.run(["gzip", "-dc"], input=one, capture_output=True, check=True)
    assert unzipped.stdout == data


def test_parallel_gzip_compresses_as_well_as_zlib_at_the_same_level(tmp_path: Path) -> None:
    data = b"".join(
        f"{n},socks5://198.51.100.{n % 250}:1080,2026-11-20T10:{n % 60:02d}:00Z,{n % 2}\n".encode()
        for n in range(200_000)
    )
    ours = _gzip(data, threads=2, block_bytes=1024 * 1024)
    theirs = gzip.compress(data, compresslevel=6, mtime=0)
    assert len(ours) <= len(theirs) * 1.02
    path = tmp_path / "data.csv.gz"
    path.write_bytes(ours)
    with duckdb.connect() as connection:
        count = connection.execute(
            f"SELECT count(*) FROM read_csv('{path}', header=false)"
        ).fetchall()
    assert count == [(200_000,)]


def test_an_aborted_gzip_writes_nothing_more() -> None:
    sink = io.BytesIO()

    def fail_midway() -> None:
        with ParallelGzipWriter(sink, 6, threads=2, block_bytes=1024) as stream:
            stream.write(b"x" * 10_000)
            raise RuntimeError("the source failed")

    with pytest.raises(RuntimeError, match="the source failed"):
        fail_midway()
    written = sink.getvalue()
    assert written.startswith(b"\x1f\x8b")
    with pytest.raises(EOFError):
        gzip.decompress(written)  # no trailer: a truncated stream, never a valid short one


def test_a_gzip_level_outside_zlibs_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="gzip level 12 is not in 0-9"):
        ParallelGzipWriter(io.BytesIO(), 12)
