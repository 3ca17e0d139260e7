"""proxy_list through Dagster: files, manifest, metadata, reproducibility, no credentials."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, materialize

from export_assets.defs.exports import proxy_list
from export_assets.lib.exports.manifest import ExportManifest
from export_assets.lib.sample import SampleDeployment
from export_assets.lib.source import POOL_SCHEMA
from export_assets_tests.conftest import configured, export_resources
from export_assets_tests.handmade import HandmadeDatabase

A = "http://198.51.100.1:8080"
HOSTILE_SOURCE = '=HYPERLINK("http://evil","x"),\r\n"quoted"\x07 Привет 代理'


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "proxies.db"
    path.parent.mkdir()
    with HandmadeDatabase(path) as db:
        db.add_proxy(
            A,
            source=HOSTILE_SOURCE,
            source_url="https://bob:s3cr3t@lists.example/x",
            username="encrypted:Z0FBQUFBQm5vdGFyZWFsdG9rZW4=",
            password="plain-legacy-pass",
        )
        db.add_proxy("socks5://198.51.100.9:1080", discovered_at="2026-11-01 10:00:00.000000")
        db.add_check(A, "2026-11-01 00:00:00.000000", True, 120.5)
        db.add_check(A, "2026-11-01 12:00:00.000000", False, error_type="timeout")
    return path


def read_csv_gz(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def run(database: Path, exports: Path, partition: str, instance: DagsterInstance) -> None:
    result = materialize(
        [proxy_list],
        partition_key=partition,
        resources=export_resources(database, exports),
        instance=instance,
    )
    assert result.success


def test_export_writes_the_data_file_and_the_manifest_at_the_documented_paths(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    run(database, exports, "2026-11-01", instance)

    folder = exports / "proxy_list" / "dt=2026-11-01"
    assert sorted(p.name for p in folder.iterdir()) == [
        "_manifest.json",
        "proxy_list-2026-11-01.csv.gz",
    ]
    rows = read_csv_gz(folder / "proxy_list-2026-11-01.csv.gz")
    assert [row["url"] for row in rows] == [A, "socks5://198.51.100.9:1080"]
    first = rows[0]
    assert list(first) == POOL_SCHEMA.names
    assert first["source"] == "'" + HOSTILE_SOURCE  # quoted intact, formula neutralised
    assert first["source_url"] == "https://***:***@lists.example/x"
    assert first["health_status"] == "unhealthy"
    assert first["discovered_at"] == "2026-10-01T00:00:00.000000Z"
    assert first["last_success_at"] == "2026-11-01T00:00:00.000000Z"
    assert (first["total_checks"], first["total_successes"]) == ("2", "1")
    assert first["avg_response_time_ms"] == "120.5"
    assert rows[1]["health_status"] == "unknown"
    assert rows[1]["last_check_at"] == ""

    data = (folder / "proxy_list-2026-11-01.csv.gz").read_bytes()
    manifest = ExportManifest.from_json((folder / "_manifest.json").read_bytes())
    assert manifest.asset == "proxy_list"
    assert manifest.partition == "2026-11-01"
    assert manifest.format == "csv"
    assert manifest.compression == "gzip"
    assert manifest.total_rows == 2
    assert manifest.files[0].rows == 2
    assert manifest.files[0].path == "proxy_list-2026-11-01.csv.gz"
    assert manifest.files[0].bytes == len(data)
    assert manifest.files[0].sha256 == hashlib.sha256(data).hexdigest()
    assert manifest.source["as_of"] == "2026-11-02T00:00:00Z"
    assert manifest.source["validation_results_max_id"] == 2
    assert manifest.credential_policy == "redact"
    assert [c["name"] for c in manifest.columns] == POOL_SCHEMA.names
    assert manifest.previous_manifest is None
    run_record = instance.get_run_by_id(manifest.run_id)
    assert run_record is not None
    assert run_record.tags["dagster/partition"] == "2026-11-01"

    materialization = instance.get_latest_materialization_event(proxy_list.key)
    assert materialization is not None
    assert materialization.asset_materialization is not None
    metadata = {k: v.value for k, v in materialization.asset_materialization.metadata.items()}
    assert metadata["dagster/partition_row_count"] == 2
    assert metadata["dagster/uri"] == (folder / "proxy_list-2026-11-01.csv.gz").resolve().as_uri()
    assert metadata["bytes"] == len(data)
    assert metadata["sha256"] == manifest.files[0].sha256
    assert metadata["credential_policy"] == "redact"


def test_credentials_never_reach_the_export(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    run(database, exports, "2026-11-01", instance)
    text = gzip.decompress(next(exports.rglob("*.csv.gz")).read_bytes()).decode()
    for secret in ("plain-legacy-pass", "Z0FBQUFBQm5vdGFyZWFsdG9rZW4", "s3cr3t", "bob:"):
        assert secret not in text
    assert "username" not in text.splitlines()[0]
    assert "password" not in text.splitlines()[0]


def test_reexport_is_byte_identical_and_chains_manifests(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    run(database, exports, "2026-10-31", instance)
    run(database, exports, "2026-11-01", instance)
    data = exports / "proxy_list" / "dt=2026-11-01" / "proxy_list-2026-11-01.csv.gz"
    first_bytes = data.read_bytes()
    first_manifest = json.loads(data.with_name("_manifest.json").read_bytes())

    run(database, exports, "2026-11-01", instance)
    assert data.read_bytes() == first_bytes
    second_manifest = json.loads(data.with_name("_manifest.json").read_bytes())
    assert second_manifest["run_id"] != first_manifest["run_id"]
    run_facts = {"run_id", "created_at"}
    assert {k: v for k, v in second_manifest.items() if k not in run_facts} == {
        k: v for k, v in first_manifest.items() if k not in run_facts
    }
    earlier = exports / "proxy_list" / "dt=2026-10-31" / "_manifest.json"
    assert second_manifest["previous_manifest"] == {
        "partition": "2026-10-31",
        "sha256": hashlib.sha256(earlier.read_bytes()).hexdigest(),
    }


def test_a_day_before_any_proxy_exports_a_header_only_file(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    run(database, exports, "2025-06-01", instance)
    path = exports / "proxy_list" / "dt=2025-06-01" / "proxy_list-2025-06-01.csv.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    assert len(lines) == 1
    assert next(csv.reader(io.StringIO(lines[0]))) == POOL_SCHEMA.names
    manifest = ExportManifest.from_json(path.with_name("_manifest.json").read_bytes())
    assert manifest.total_rows == 0


def test_a_failed_export_keeps_the_previous_version_and_leaves_no_debris(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    run(database, exports, "2026-11-01", instance)
    folder = exports / "proxy_list" / "dt=2026-11-01"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    with sqlite3.connect(database) as connection:  # a row the reader cannot parse
        connection.execute(
            "INSERT INTO proxy_identities VALUES ('http://z:1', 'http', 'z', 'not-a-port', NULL,"
            " NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, 1, 'x', NULL,"
            " '2026-10-01 00:00:00')"
        )
    connection.close()
    result = materialize(
        [proxy_list],
        partition_key="2026-11-01",
        resources=export_resources(database, exports),
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error  # type: ignore[union-attr]
    assert error is not None
    assert error.cause is not None
    assert error.cause.cls_name == "SourceError"
    assert "proxy_identities.port holds a value that is not int32" in error.cause.message
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, 80),
        ({"protocols": ["socks5"]}, "socks5"),
        ({"health_statuses": ["dead", "unknown"]}, "dead/unknown"),
        ({"countries": ["de", "US"]}, "DE/US"),
        ({"min_success_rate": 0.9}, ">=0.9"),
        ({"protocols": ["http"], "min_success_rate": 0.5}, "http>=0.5"),
    ],
)
def test_filters_keep_exactly_the_matching_proxies(
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    filters: dict[str, Any],
    expected: object,
) -> None:
    exports = tmp_path / "exports"
    partition = "2026-11-20"
    config = {"format": "jsonl", **filters}
    result = materialize(
        [configured(proxy_list, config)],
        partition_key=partition,
        instance=instance,
        resources=export_resources(sample_deployment.database, exports),
    )
    assert result.success
    path = exports / "proxy_list" / f"dt={partition}" / f"proxy_list-{partition}.jsonl.gz"
    rows = [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    everything: list[dict[str, Any]] = [
        json.loads(line) for line in _all_rows(sample_deployment, tmp_path, instance)
    ]
    wanted = [row for row in everything if matches(row, filters)]
    assert rows == wanted
    if filters:
        assert 0 < len(rows) < len(everything), f"{expected}: the filter should select a part"


def matches(row: dict[str, Any], filters: dict[str, Any]) -> bool:
    """What the filters mean, written out independently of the asset's Arrow code."""
    rate = row["success_rate"]
    return (
        row["protocol"] in filters.get("protocols", [row["protocol"]])
        and row["health_status"] in filters.get("health_statuses", [row["health_status"]])
        and ("countries" not in filters or row["country_code"] in ("DE", "US"))
        and (
            "min_success_rate" not in filters
            or (rate is not None and rate >= filters["min_success_rate"])
        )
    )


def _all_rows(sample: SampleDeployment, tmp_path: Path, instance: DagsterInstance) -> list[bytes]:
    everything = tmp_path / "everything"
    assert materialize(
        [configured(proxy_list, {"format": "jsonl"})],
        partition_key="2026-11-20",
        instance=instance,
        resources=export_resources(sample.database, everything),
    ).success
    path = everything / "proxy_list" / "dt=2026-11-20" / "proxy_list-2026-11-20.jsonl.gz"
    return gzip.decompress(path.read_bytes()).splitlines()
