"""The ExportIOManager through Dagster: the one writer of the project.

Every run is a real ``materialize`` on a real instance, writing real files (or objects on
moto's S3 server on 127.0.0.1, through boto3 as production does). What was written is read
back with independent readers: gzip + csv, json, zstandard, zipfile, pyarrow.parquet,
openpyxl, DuckDB and plain boto3, never the project's own readers.
"""
# No "from __future__ import annotations": Dagster reads the test assets' annotations.

import csv
import gzip
import hashlib
import io
import json
import sqlite3
import time
import tracemalloc
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import openpyxl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import zstandard
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DagsterInstance,
    ExecuteInProcessResult,
    asset,
    materialize,
)
from pydantic import ValidationError

from export_assets.defs.exports import proxy_list
from export_assets.defs.exports.daily import INTACT, with_settings
from export_assets.defs.operations.failures import error_message, user_error
from export_assets.defs.partitions import daily_partitions
from export_assets.defs.resources.io_manager import (
    ExportFieldsError,
    read_manifest,
    selected_schema,
)
from export_assets.defs.resources.store import ExportStore
from export_assets.lib.exports import Export, ExportOptions
from export_assets.lib.exports.destinations import LocalDestination
from export_assets.lib.exports.verify import reread_problems
from export_assets.lib.source import POOL_SCHEMA
from export_assets_tests.conftest import configured, export_resources
from export_assets_tests.s3_server import MotoServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DAY = "2026-11-20"  # the sample deployment's last day: every one of its 80 proxies exists
PREFIX = "proxywhirl/daily"
MIB = 1024 * 1024

# A small schema shaped like ProxyWhirl's validation results.
VALIDATION_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("proxy_url", pa.string(), nullable=False),
        pa.field("validated_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("is_valid", pa.bool_(), nullable=False),
        pa.field("response_time_ms", pa.float64()),
        pa.field("error_type", pa.string()),
    ]
)
_EPOCH_US = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp()) * 1_000_000


@pytest.fixture
def client(moto_server: MotoServer) -> "S3Client":
    return moto_server.client()


@pytest.fixture
def bucket(client: "S3Client") -> str:
    name = f"exports-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


# --- helpers ------------------------------------------------------------------------------


def validation_batch(start: int, rows: int) -> pa.RecordBatch:
    """``rows`` validation-like rows with ids from ``start``; a third of them failed."""
    ids = np.arange(start, start + rows, dtype=np.int64)
    octets = [pa.array((ids >> shift) % 256).cast(pa.string()) for shift in (16, 8, 0)]
    url = pc.binary_join_element_wise(
        "http://10.",
        octets[0],
        ".",
        octets[1],
        ".",
        octets[2],
        ":",
        pa.array(8000 + ids % 1000).cast(pa.string()),
        "",
    )
    valid = ids % 3 != 0
    errors = np.where(ids % 2 == 0, "timeout", "connection_refused")
    return pa.RecordBatch.from_arrays(
        [
            pa.array(ids),
            url,
            pa.array(_EPOCH_US + ids * 1_000_000, pa.timestamp("us", tz="UTC")),
            pa.array(valid),
            pa.array(np.where(valid, (ids * 7919 % 100_000) / 37.0, np.nan), from_pandas=True),
            pa.array(errors, pa.string(), mask=valid),  # no error type where valid
        ],
        schema=VALIDATION_SCHEMA,
    )


def validation_batches(rows: int, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
    for start in range(0, rows, batch_rows):
        yield validation_batch(start, min(batch_rows, rows - start))


def synthetic_asset(
    batches: Callable[[], Iterator[pa.RecordBatch]],
    *,
    schema: pa.Schema = VALIDATION_SCHEMA,
    options: ExportOptions | None = None,
    source: Mapping[str, Any] | None = None,
) -> AssetsDefinition:
    """An export asset named ``synthetic`` whose batches come from ``batches()``."""

    @asset(partitions_def=daily_partitions, name="synthetic")
    def synthetic(context: AssetExecutionContext) -> Export:
        return Export(
            schema=schema,
            batches=batches(),
            options=options or ExportOptions(),
            source=source or {},
        )

    return synthetic


def export(
    asset_def: AssetsDefinition,
    partition: str,
    resources: dict[str, Any],
    instance: DagsterInstance,
    *,
    config: Mapping[str, Any] | None = None,
    raise_on_error: bool = True,
) -> ExecuteInProcessResult:
    """Materialize one partition of an export asset (an export's checks run in its step)."""
    return materialize(
        [configured(asset_def, config)],
        partition_key=partition,
        resources=resources,
        instance=instance,
        raise_on_error=raise_on_error,
    )


def failure_reason(result: ExecuteInProcessResult) -> tuple[str, str]:
    """Class and message of the failed step's user error (as the CLI shows it)."""
    assert not result.success
    [failure] = result.get_step_failure_events()
    error = failure.step_failure_data.error
    assert error is not None
    error = user_error(error)
    return error.cls_name or "", error_message(error)


def check_passed(result: ExecuteInProcessResult) -> bool:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == INTACT]
    return evaluation.passed


def metadata_of(result: ExecuteInProcessResult) -> dict[str, Any]:
    [event] = result.get_asset_materialization_events()
    return {key: value.value for key, value in event.materialization.metadata.items()}


def files_under(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones too), by path relative to it."""
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def debris(root: Path) -> list[str]:
    """Temporary files (``.*.tmp``) and any other hidden file left anywhere under ``root``."""
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(".*"))


def pool_urls(database: Path, day: str) -> list[str]:
    """The proxies discovered by the end of ``day``, read from the database with sqlite3."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        rows = connection.execute(
            "SELECT url FROM proxy_identities WHERE discovered_at < date(?, '+1 day') ORDER BY url",
            (day,),
        ).fetchall()
    connection.close()
    return [url for (url,) in rows]


def decompress(data: bytes, compression: str, entry: str) -> bytes:
    """The plain bytes of a data file, by the codec's own library."""
    if compression == "gzip":
        return gzip.decompress(data)
    if compression == "zstd":
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
            return reader.read()
    if compression == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert archive.namelist() == [entry]
            return archive.read(entry)
    assert compression == "none"
    return data


def read_back(path: Path, fmt: str, compression: str) -> list[dict[str, Any]]:
    """The rows of a data file as dicts (txt: ``{"url": line}``), by independent readers."""
    if fmt == "parquet":
        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        return rows
    if fmt == "xlsx":
        workbook = openpyxl.load_workbook(path, read_only=True)
        try:
            records: list[dict[str, Any]] = []
            for sheet in workbook.worksheets:
                values = sheet.iter_rows(values_only=True)
                header = [str(name) for name in next(values)]
                # A read-only sheet leaves out the trailing empty cells of a row.
                records += [dict(zip_longest(header, row)) for row in values]
            return records
        finally:
            workbook.close()
    entry = path.name.removesuffix(".zip")
    text = decompress(path.read_bytes(), compression, entry).decode("utf-8")
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(text, newline="")))
    if fmt == "jsonl":
        assert text.endswith("\n")
        # Split on "\n" only: str.splitlines would also split inside strings at U+2028.
        return [json.loads(line) for line in text[:-1].split("\n")]
    if fmt == "json":
        array: list[dict[str, Any]] = json.loads(text)
        return array
    assert fmt == "txt"
    assert text.endswith("\n")
    return [{"url": line} for line in text[:-1].split("\n")]


# --- every format through the IO manager --------------------------------------------------

FORMAT_FILES = [
    ("csv", "gzip", "csv.gz"),
    ("csv", "zstd", "csv.zst"),
    ("csv", "zip", "csv.zip"),
    ("jsonl", "gzip", "jsonl.gz"),
    ("json", "gzip", "json.gz"),
    ("txt", "gzip", "txt.gz"),
    ("parquet", "none", "parquet"),
    ("xlsx", "none", "xlsx"),
]


@pytest.mark.parametrize(
    ("fmt", "compression", "extension"), FORMAT_FILES, ids=[f"{f}-{c}" for f, c, _ in FORMAT_FILES]
)
def test_every_format_is_written_at_the_documented_path_and_passes_the_check(
    sample_deployment: Any,
    tmp_path: Path,
    instance: DagsterInstance,
    fmt: str,
    compression: str,
    extension: str,
) -> None:
    exports = tmp_path / "exports"
    result = export(
        proxy_list,
        DAY,
        export_resources(sample_deployment.database, exports),
        instance,
        config={"format": fmt, "compression": compression},
    )

    assert result.success
    assert check_passed(result)
    name = f"proxy_list-{DAY}.{extension}"
    folder = exports / "proxy_list" / f"dt={DAY}"
    assert sorted(files_under(exports)) == [
        f"proxy_list/dt={DAY}/_manifest.json",
        f"proxy_list/dt={DAY}/{name}",
    ]
    data = (folder / name).read_bytes()
    rows = read_back(folder / name, fmt, compression)
    assert [row["url"] for row in rows] == pool_urls(sample_deployment.database, DAY)
    if fmt == "xlsx":  # Excel has no time zones: its timestamp headers say (UTC)
        assert list(rows[0]) == [
            f"{f.name} (UTC)" if pa.types.is_timestamp(f.type) else f.name for f in POOL_SCHEMA
        ]
    elif fmt != "txt":
        assert list(rows[0]) == POOL_SCHEMA.names

    manifest = json.loads((folder / "_manifest.json").read_bytes())
    assert manifest["asset"] == "proxy_list"
    assert manifest["partition"] == DAY
    assert manifest["run_id"] == result.run_id
    assert (manifest["format"], manifest["compression"]) == (fmt, compression)
    assert manifest["files"] == [
        {
            "path": name,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "rows": len(rows),
        }
    ]
    assert manifest["total_rows"] == len(rows) == 80
    assert manifest["credential_policy"] == "redact"
    # The deep re-read (verify_exports_job) parses it back in its format and agrees.
    published = read_manifest(LocalDestination(exports), f"proxy_list/dt={DAY}/_manifest.json")
    assert published is not None
    assert reread_problems(LocalDestination(exports), published) == []


# --- field selection ----------------------------------------------------------------------


def test_fields_select_exactly_those_columns_in_that_order(
    sample_deployment: Any, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    result = export(
        proxy_list,
        DAY,
        export_resources(sample_deployment.database, exports),
        instance,
        config={"fields": ["url", "health_status"]},
    )

    assert check_passed(result)
    folder = exports / "proxy_list" / f"dt={DAY}"
    text = gzip.decompress((folder / f"proxy_list-{DAY}.csv.gz").read_bytes()).decode()
    records = list(csv.reader(io.StringIO(text, newline="")))
    assert records[0] == ["url", "health_status"]
    assert [record[0] for record in records[1:]] == pool_urls(sample_deployment.database, DAY)
    assert {record[1] for record in records[1:]} <= {"healthy", "unhealthy", "unknown", "dead"}
    manifest = json.loads((folder / "_manifest.json").read_bytes())
    assert manifest["columns"] == [
        {"name": "url", "type": "string", "nullable": False},
        {"name": "health_status", "type": "string", "nullable": False},
    ]
    assert metadata_of(result)["dagster/partition_row_count"] == len(records) - 1


def test_an_unknown_field_is_refused_naming_it_and_the_valid_ones(tmp_path: Path) -> None:
    # The daily record's settings are built where the code location is defined: refused there.
    with pytest.raises(ValidationError) as refused:
        with_settings(proxy_list, fields=["url", "api_token"])
    assert str(refused.value) == (
        "invalid run config (ProxyListConfig): fields=['url', 'api_token']: no field "
        f"'api_token'; valid fields: {', '.join([*POOL_SCHEMA.names, 'username', 'password'])}"
    )
    # The IO manager refuses one too, whatever built the export.
    with pytest.raises(ExportFieldsError, match="proxy_list has no field 'api_token'; valid"):
        selected_schema(POOL_SCHEMA, ("url", "api_token"), "proxy_list")


# --- replacing a partition in another format ----------------------------------------------


def test_reexport_in_another_format_replaces_the_partition_and_removes_the_old_file(
    sample_deployment: Any, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    resources = export_resources(sample_deployment.database, exports)
    folder = exports / "proxy_list" / f"dt={DAY}"
    export(proxy_list, DAY, resources, instance, config={"format": "csv"})
    old = json.loads((folder / "_manifest.json").read_bytes())
    assert [entry["path"] for entry in old["files"]] == [f"proxy_list-{DAY}.csv.gz"]

    result = export(proxy_list, DAY, resources, instance, config={"format": "parquet"})

    assert check_passed(result)
    assert sorted(files_under(exports)) == [
        f"proxy_list/dt={DAY}/_manifest.json",
        f"proxy_list/dt={DAY}/proxy_list-{DAY}.parquet",
    ]
    new = json.loads((folder / "_manifest.json").read_bytes())
    assert [entry["path"] for entry in new["files"]] == [f"proxy_list-{DAY}.parquet"]
    assert (new["format"], new["compression"]) == ("parquet", "none")
    assert pq.read_table(folder / f"proxy_list-{DAY}.parquet").num_rows == new["total_rows"]
    assert debris(exports) == []


# --- a failure in the middle of a write ---------------------------------------------------


@pytest.mark.parametrize("had_previous", [True, False], ids=["replacing", "first-time"])
def test_local_failure_mid_write_keeps_the_earlier_version_and_leaves_no_debris(
    sample_deployment: Any, tmp_path: Path, instance: DagsterInstance, had_previous: bool
) -> None:
    exports = tmp_path / "exports"
    resources = export_resources(sample_deployment.database, exports)
    folder = exports / "synthetic" / "dt=2026-11-01"
    if had_previous:
        export(
            synthetic_asset(lambda: validation_batches(1_000)), "2026-11-01", resources, instance
        )
    before = files_under(exports)
    temporary_during_write: list[list[str]] = []

    def failing() -> Iterator[pa.RecordBatch]:
        for start in range(0, 30_000, 10_000):
            yield validation_batch(start, 10_000)
        # The run's partition lease is there too while it writes (and gone afterwards).
        lease = "synthetic/.dt=2026-11-01.lease"
        hidden = debris(exports)
        assert lease in hidden
        temporary_during_write.append([name for name in hidden if name != lease])
        raise RuntimeError("source connection lost mid-export")

    result = export(
        synthetic_asset(failing), "2026-11-01", resources, instance, raise_on_error=False
    )

    assert failure_reason(result) == ("RuntimeError", "source connection lost mid-export")
    [[temporary]] = temporary_during_write  # the write had begun
    assert temporary.startswith("synthetic/dt=2026-11-01/.synthetic-2026-11-01.csv.gz.")
    assert temporary.endswith(".tmp")
    assert files_under(exports) == before  # data and manifest byte-identical
    assert debris(exports) == []
    if had_previous:
        assert len(before) == 2
    else:
        assert before == {}
        assert not folder.exists()
        assert not (exports / "synthetic").exists()
        assert not exports.exists() or not any(exports.iterdir())


def s3_objects(client: "S3Client", bucket: str) -> dict[str, bytes]:
    """Every object in the bucket with its bytes, read with plain boto3 calls."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    return {key: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def pending_uploads(client: "S3Client", bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def random_text_batch(start: int, rows: int, width: int = 120) -> pa.RecordBatch:
    """Rows whose ``proxy_url`` is ``width`` random hex characters, so that a batch is
    about ``rows * width`` bytes of CSV."""
    text = np.random.default_rng(start).bytes(rows * width // 2).hex().encode()
    urls = pa.StringArray.from_buffers(
        rows, pa.py_buffer(np.arange(rows + 1, dtype=np.int32) * width), pa.py_buffer(text)
    )
    batch = validation_batch(start, rows)
    return batch.set_column(1, VALIDATION_SCHEMA.field("proxy_url"), urls)


@pytest.mark.parametrize("had_previous", [True, False], ids=["replacing", "first-time"])
def test_s3_failure_mid_upload_keeps_the_earlier_version_and_no_pending_upload(
    sample_deployment: Any,
    tmp_path: Path,
    instance: DagsterInstance,
    moto_server: MotoServer,
    client: "S3Client",
    bucket: str,
    had_previous: bool,
) -> None:
    store = ExportStore(destination=f"s3://{bucket}/{PREFIX}", s3=moto_server.resource())
    resources = export_resources(sample_deployment.database, tmp_path / "unused", store=store)
    options = ExportOptions(format="csv", compression="none")
    if had_previous:
        export(
            synthetic_asset(lambda: validation_batches(1_000), options=options),
            "2026-11-01",
            resources,
            instance,
        )
    before = s3_objects(client, bucket)
    pending_during_write: list[list[str]] = []

    def failing() -> Iterator[pa.RecordBatch]:
        # ~20 MB of CSV: past the first 8 MiB part, so a multipart upload is under way.
        for number in range(12):
            yield random_text_batch(number * 10_000, 10_000)
        pending_during_write.append(pending_uploads(client, bucket))
        raise RuntimeError("source connection lost mid-upload")

    result = export(
        synthetic_asset(failing, options=options),
        "2026-11-01",
        resources,
        instance,
        raise_on_error=False,
    )

    assert failure_reason(result) == ("RuntimeError", "source connection lost mid-upload")
    data_key = f"{PREFIX}/synthetic/dt=2026-11-01/synthetic-2026-11-01.csv"
    assert pending_during_write == [[data_key]]
    assert pending_uploads(client, bucket) == []
    assert s3_objects(client, bucket) == before
    assert len(before) == (2 if had_previous else 0)


# --- a failure after the data file, before the manifest -----------------------------------


@pytest.mark.parametrize("had_previous", [True, False], ids=["replacing", "first-time"])
def test_a_failure_publishing_the_manifest_keeps_the_earlier_version(
    sample_deployment: Any, tmp_path: Path, instance: DagsterInstance, had_previous: bool
) -> None:
    exports = tmp_path / "exports"
    resources = export_resources(sample_deployment.database, exports)
    if had_previous:
        export(
            synthetic_asset(lambda: validation_batches(1_000)), "2026-11-01", resources, instance
        )
    before = files_under(exports)

    # A datetime in the source facts: json cannot write it, so the manifest step fails.
    result = export(
        synthetic_asset(
            lambda: validation_batches(2_000), source={"as_of": datetime(2026, 11, 2, tzinfo=UTC)}
        ),
        "2026-11-01",
        resources,
        instance,
        raise_on_error=False,
    )

    assert failure_reason(result)[0] == "TypeError"
    assert files_under(exports) == before
    assert debris(exports) == []


# --- validation against the declared schema -----------------------------------------------


def _batch_of_another_schema() -> pa.RecordBatch:
    batch = validation_batch(1_000, 1_000)
    return batch.set_column(
        0, pa.field("id", pa.int32(), nullable=False), batch.column(0).cast(pa.int32())
    )


def _batch_with_a_null_id() -> pa.RecordBatch:
    batch = validation_batch(1_000, 1_000)
    ids = pa.array([None, *batch.column(0).to_pylist()[1:]], pa.int64())
    return pa.RecordBatch.from_arrays([ids, *batch.columns[1:]], schema=VALIDATION_SCHEMA)


BAD_BATCHES: dict[str, tuple[Callable[[], pa.RecordBatch], str]] = {
    "another-schema": (
        _batch_of_another_schema,
        "a batch of synthetic/dt=2026-11-01/synthetic-2026-11-01.csv.gz does not match the "
        "declared schema: got ",
    ),
    "null-in-not-null-column": (
        _batch_with_a_null_id,
        "synthetic/dt=2026-11-01/synthetic-2026-11-01.csv.gz: column id is declared not null "
        "but a batch holds 1 null(s)",
    ),
}


@pytest.mark.parametrize("bad", list(BAD_BATCHES))
@pytest.mark.parametrize("had_previous", [True, False], ids=["replacing", "first-time"])
def test_a_batch_that_breaks_the_declared_schema_fails_the_run_and_publishes_nothing(
    sample_deployment: Any, tmp_path: Path, instance: DagsterInstance, bad: str, had_previous: bool
) -> None:
    exports = tmp_path / "exports"
    resources = export_resources(sample_deployment.database, exports)
    if had_previous:
        export(synthetic_asset(lambda: validation_batches(500)), "2026-11-01", resources, instance)
    before = files_under(exports)
    make_bad, message = BAD_BATCHES[bad]

    def batches() -> Iterator[pa.RecordBatch]:
        yield validation_batch(0, 1_000)
        yield make_bad()

    result = export(
        synthetic_asset(batches), "2026-11-01", resources, instance, raise_on_error=False
    )

    kind, text = failure_reason(result)
    assert kind == "ExportSchemaError"
    assert text.startswith(message)
    if bad == "another-schema":
        assert "id: int32 not null" in text
        assert "id: int64 not null" in text
    assert result.get_asset_materialization_events() == []
    assert files_under(exports) == before
    assert debris(exports) == []


# --- S3 end to end ------------------------------------------------------------------------


def test_s3_end_to_end_keys_manifest_chain_check_and_replace(
    sample_deployment: Any,
    tmp_path: Path,
    instance: DagsterInstance,
    moto_server: MotoServer,
    client: "S3Client",
    bucket: str,
) -> None:
    store = ExportStore(destination=f"s3://{bucket}/{PREFIX}", s3=moto_server.resource())
    resources = export_resources(sample_deployment.database, tmp_path / "unused", store=store)
    days = ["2026-11-19", "2026-11-20"]
    results = [export(proxy_list, day, resources, instance) for day in days]

    def data_key(day: str) -> str:
        return f"{PREFIX}/proxy_list/dt={day}/proxy_list-{day}.csv.gz"

    def manifest_key(day: str) -> str:
        return f"{PREFIX}/proxy_list/dt={day}/_manifest.json"

    objects = s3_objects(client, bucket)
    assert sorted(objects) == sorted([data_key(d) for d in days] + [manifest_key(d) for d in days])
    assert pending_uploads(client, bucket) == []
    assert not (tmp_path / "unused").exists()
    manifests = {day: json.loads(objects[manifest_key(day)]) for day in days}
    for day, result in zip(days, results, strict=True):
        assert check_passed(result)
        data = objects[data_key(day)]
        rows = list(csv.DictReader(io.StringIO(gzip.decompress(data).decode(), newline="")))
        assert [row["url"] for row in rows] == pool_urls(sample_deployment.database, day)
        manifest = manifests[day]
        assert manifest["run_id"] == result.run_id
        assert manifest["files"] == [
            {
                "path": f"proxy_list-{day}.csv.gz",
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "rows": len(rows),
            }
        ]
        assert manifest["total_rows"] == len(rows)
        assert metadata_of(result)["dagster/uri"] == f"s3://{bucket}/{data_key(day)}"
    assert manifests[days[0]]["previous_manifest"] is None
    assert manifests[days[1]]["previous_manifest"] == {
        "partition": days[0],
        "sha256": hashlib.sha256(objects[manifest_key(days[0])]).hexdigest(),
    }

    again = export(proxy_list, days[1], resources, instance)

    assert check_passed(again)
    replaced = s3_objects(client, bucket)
    assert sorted(replaced) == sorted(objects)
    assert pending_uploads(client, bucket) == []
    assert replaced[data_key(days[1])] == objects[data_key(days[1])]
    assert replaced[manifest_key(days[0])] == objects[manifest_key(days[0])]
    manifest = json.loads(replaced[manifest_key(days[1])])
    assert manifest["run_id"] == again.run_id != manifests[days[1]]["run_id"]
    assert manifest["files"] == manifests[days[1]]["files"]
    assert manifest["previous_manifest"] == manifests[days[1]]["previous_manifest"]


# --- memory stays bounded -----------------------------------------------------------------

# A pool must outlive every buffer it allocated: keep the measuring pools for the session.
_POOLS: list[pa.MemoryPool] = []


def _export_and_measure(
    rows: int, partition: str, resources: dict[str, Any], instance: DagsterInstance
) -> dict[str, int]:
    """Export ``rows`` validation rows as csv.gz; peak Arrow and Python bytes meanwhile."""
    previous = pa.default_memory_pool()
    pool = pa.proxy_memory_pool(previous)
    _POOLS.append(pool)
    pa.set_memory_pool(pool)
    tracemalloc.start()
    try:
        # Without the check: it is the writer's memory that is measured.
        result = export(
            synthetic_asset(lambda: validation_batches(rows)),
            partition,
            resources,
            instance,
        )
        python_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        pa.set_memory_pool(previous)
    metadata = metadata_of(result)
    assert metadata["dagster/partition_row_count"] == rows
    return {
        "arrow": pool.max_memory() or 0,
        "python": python_peak,
        "bytes": metadata["bytes"],
        "uncompressed_bytes": metadata["uncompressed_bytes"],
    }


def _csv_gz_records(path: Path) -> int:
    """Lines of a gzip file less the header (the synthetic rows hold no line break)."""
    inflate = zlib.decompressobj(wbits=31)
    lines = 0
    with open(path, "rb") as stream:
        while chunk := stream.read(MIB):
            lines += inflate.decompress(chunk).count(b"\n")
    return lines + inflate.flush().count(b"\n") - 1


@pytest.mark.slow  # exports of growing size, memory measured: the benchmark's kind of test
def test_memory_does_not_grow_with_row_count(
    sample_deployment: Any, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    resources = export_resources(sample_deployment.database, exports)
    export(synthetic_asset(lambda: validation_batches(1_000)), "2026-10-31", resources, instance)

    started = time.monotonic()
    small = _export_and_measure(200_000, "2026-11-01", resources, instance)
    large = _export_and_measure(1_000_000, "2026-11-02", resources, instance)
    seconds = time.monotonic() - started

    figures = f"200k rows: {small}; 1M rows: {large}; {seconds:.1f} s"
    print(figures)
    margin = 4 * MIB
    assert large["arrow"] <= small["arrow"] + margin, figures
    assert large["python"] <= small["python"] + margin, figures
    # Far below what holding the rows would take (~87 MB of CSV for 1M rows): a batch in
    # flight, the codec's and the leak scan's buffers, and Dagster's own.
    assert large["arrow"] + large["python"] < large["uncompressed_bytes"] / 3, figures
    for rows, day in ((200_000, "2026-11-01"), (1_000_000, "2026-11-02")):
        path = exports / "synthetic" / f"dt={day}" / f"synthetic-{day}.csv.gz"
        assert _csv_gz_records(path) == rows


# --- DuckDB reads an asset as one hive-partitioned table ----------------------------------


def query(sql: str) -> list[tuple[Any, ...]]:
    """The rows of a DuckDB query (in-memory database)."""
    relation = duckdb.sql(sql)
    assert relation is not None
    return relation.fetchall()


def test_duckdb_reads_an_asset_as_one_hive_partitioned_table(
    sample_deployment: Any, tmp_path: Path, instance: DagsterInstance
) -> None:
    days = ["2026-11-17", "2026-11-18", "2026-11-19"]
    totals: dict[str, dict[date, int]] = {}
    for fmt in ("csv", "parquet"):
        resources = export_resources(sample_deployment.database, tmp_path / fmt)
        for day in days:
            export(proxy_list, day, resources, instance, config={"format": fmt})
        totals[fmt] = {
            date.fromisoformat(day): json.loads(
                (tmp_path / fmt / "proxy_list" / f"dt={day}" / "_manifest.json").read_bytes()
            )["total_rows"]
            for day in days
        }

    queries = {
        "csv": f"read_csv('{tmp_path}/csv/proxy_list/*/*.csv.gz', hive_partitioning=true)",
        "parquet": f"read_parquet('{tmp_path}/parquet/proxy_list/*/*.parquet', "
        "hive_partitioning=true)",
    }
    for fmt, table in queries.items():
        [(total, distinct)] = query(f"SELECT count(*), count(DISTINCT dt) FROM {table}")
        assert (total, distinct) == (sum(totals[fmt].values()), 3)
        assert dict(query(f"SELECT dt, count(*) FROM {table} GROUP BY dt")) == totals[fmt]
        urls = query(f"SELECT url FROM {table} WHERE dt = DATE '2026-11-19' ORDER BY url")
        assert [url for (url,) in urls] == pool_urls(sample_deployment.database, "2026-11-19")
    assert totals["csv"] == totals["parquet"]


# --- materialization metadata -------------------------------------------------------------


def test_materialization_metadata_describes_the_file(
    sample_deployment: Any, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    result = export(
        proxy_list, DAY, export_resources(sample_deployment.database, exports), instance
    )

    path = exports / "proxy_list" / f"dt={DAY}" / f"proxy_list-{DAY}.csv.gz"
    data = path.read_bytes()
    plain = gzip.decompress(data)
    metadata = metadata_of(result)
    assert metadata["dagster/uri"] == path.resolve().as_uri()
    assert metadata["dagster/partition_row_count"] == 80
    assert metadata["bytes"] == len(data)
    assert metadata["uncompressed_bytes"] == len(plain)
    assert 0 < metadata["compression_ratio"] < 1
    assert metadata["compression_ratio"] == pytest.approx(1 - len(data) / len(plain), abs=1e-4)
    assert metadata["size"].endswith(" kB")
    columns = [(c.name, c.type) for c in metadata["dagster/column_schema"].columns]
    assert columns == [(f.name, str(f.type)) for f in POOL_SCHEMA]
    assert metadata["sha256"] == hashlib.sha256(data).hexdigest()
    assert metadata["format"] == "csv"
    assert metadata["compression"] == "gzip"
    assert metadata["credential_policy"] == "redact"
    # The same facts reach the instance's event log, the audit trail.
    event = instance.get_latest_materialization_event(proxy_list.key)
    assert event is not None
    assert event.asset_materialization is not None
    assert event.asset_materialization.partition == DAY
    stored = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert {k: stored[k] for k in metadata} == metadata
