"""proxy_changes: added, removed and status_changed proxies per day, on known histories."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import sqlite3
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize

from export_assets.defs.exports.proxy_changes import proxy_changes
from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.lib.exports.manifest import ExportManifest
from export_assets.lib.sample import SampleDeployment
from export_assets.lib.source import POOL_SCHEMA
from export_assets.lib.source.changes import (
    CHANGES_SCHEMA,
    REMOVED,
    PoolChanges,
    diff_pools,
    pool_changes,
)
from export_assets_tests.conftest import configured, export_resources, request_config, requested
from export_assets_tests.handmade import HandmadeDatabase

A = "http://198.51.100.1:8080"  # healthy on 11-01, unhealthy on 11-02, dead at 11-03 00:00
B = "socks5://198.51.100.2:1080"  # discovered during 11-02
C = "http://198.51.100.3:3128"  # discovered at exactly 11-03 00:00:00.000000
GONE = "https://198.51.100.9:8443"  # identity deleted; last checked on 11-02
GONE_WITH_CREDENTIALS = "http://carol:hunter2@198.51.100.8:3128"  # likewise
GONE_MASKED = "http://***:***@198.51.100.8:3128"
GONE_LONG_AGO = "http://198.51.100.7:80"  # identity deleted; last checked on 10-20


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "proxies.db"
    path.parent.mkdir()
    with HandmadeDatabase(path) as db:
        db.add_proxy(A, discovered_at="2026-10-01 00:00:00.000000")
        db.add_proxy(
            B,
            discovered_at="2026-11-02T08:00:00+00:00",  # a liberal form
            source_url="https://bob:s3cr3t@lists.example/x",
            country_code="DE",
        )
        db.add_proxy(C, discovered_at="2026-11-03 00:00:00.000000")
        db.add_check(GONE_LONG_AGO, "2026-10-20 12:00:00.000000", True, 10.0)
        db.add_check(A, "2026-11-01 10:00:00.000000", True, 100.0)
        db.add_check(GONE, "2026-11-01 05:00:00.000000", True, 80.0)
        db.add_check(GONE_WITH_CREDENTIALS, "2026-11-01 06:00:00.000000", True, 90.0)
        db.add_check(B, "2026-11-02 09:00:00.000000", True, 70.0)
        db.add_check(GONE, "2026-11-02 09:00:00.000000", False, error_type="timeout")
        db.add_check(A, "2026-11-02 10:00:00.000000", False, error_type="timeout")
        db.add_check(GONE_WITH_CREDENTIALS, "2026-11-02 23:59:59.999999", True, 110.0)
        db.add_check(A, "2026-11-02 23:59:59.999999", False, error_type="timeout")
        db.add_check(A, "2026-11-03 00:00:00.000000", False, error_type="ssl_error")  # id 10
    return path


def run(
    database: Path,
    exports: Path,
    partition: str,
    instance: DagsterInstance,
    **config: Any,
) -> None:
    result = materialize(
        [configured(proxy_changes, config)],
        partition_key=partition,
        instance=instance,
        resources=export_resources(database, exports, batch_rows=2),  # several batches a pool
    )
    assert result.success


def read_jsonl_gz(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as stream:
        return [json.loads(line) for line in stream]


def read_parquet(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return rows


def manifest_of(exports: Path, partition: str) -> ExportManifest:
    path = exports / "proxy_changes" / f"dt={partition}" / "_manifest.json"
    return ExportManifest.from_json(path.read_bytes())


def kinds_and_urls(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(row["change"], row["url"]) for row in rows]


def test_a_day_with_every_kind_of_change(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    run(database, exports, "2026-11-03", instance, format="jsonl")
    folder = exports / "proxy_changes" / "dt=2026-11-03"
    assert sorted(p.name for p in folder.iterdir()) == [
        "_manifest.json",
        "proxy_changes-2026-11-03.jsonl.gz",
    ]
    rows = read_jsonl_gz(folder / "proxy_changes-2026-11-03.jsonl.gz")
    # By kind, then url; removed proxies come from their orphaned history.
    assert kinds_and_urls(rows) == [
        ("added", C),
        ("removed", GONE_MASKED),
        ("removed", GONE),
        ("status_changed", A),
    ]
    assert all(list(row) == CHANGES_SCHEMA.names for row in rows)
    added, gone_with_credentials, gone, changed = rows

    # Discovered at exactly midnight: the new day's, never checked.
    assert (added["status_from"], added["status_to"]) == (None, "unknown")
    assert added["health_status"] == "unknown"
    assert added["discovered_at"] == "2026-11-03T00:00:00.000000Z"
    assert added["source"] == "fetched"
    assert added["is_datacenter"] is True

    # Removed the day after its last check, as it stood at the end of that day.
    assert (gone["status_from"], gone["status_to"]) == ("unhealthy", None)
    assert gone["health_status"] == "unhealthy"
    assert (gone["protocol"], gone["host"], gone["port"]) == ("https", "198.51.100.9", 8443)
    assert (gone["total_checks"], gone["total_successes"]) == (2, 1)
    assert (gone["consecutive_failures"], gone["checks_7d"]) == (1, 2)
    assert gone["last_check_at"] == "2026-11-02T09:00:00.000000Z"
    assert gone["last_success_at"] == "2026-11-01T05:00:00.000000Z"
    assert gone["avg_response_time_ms"] == 80.0
    assert gone["success_rate"] == 0.5
    for unknown in (
        "source",
        "source_url",
        "is_residential",
        "is_datacenter",
        "discovered_at",
        "country_code",
        "asn",
    ):
        assert gone[unknown] is None
    assert (gone_with_credentials["status_from"], gone_with_credentials["status_to"]) == (
        "healthy",
        None,
    )
    assert (gone_with_credentials["host"], gone_with_credentials["port"]) == ("198.51.100.8", 3128)
    assert gone_with_credentials["last_check_at"] == "2026-11-02T23:59:59.999999Z"

    # The third consecutive failure, at 00:00:00.000000, belongs to the new day.
    assert (changed["status_from"], changed["status_to"]) == ("unhealthy", "dead")
    assert changed["health_status"] == "dead"
    assert changed["consecutive_failures"] == 3
    assert changed["last_failure_at"] == "2026-11-03T00:00:00.000000Z"
    assert changed["discovered_at"] == "2026-10-01T00:00:00.000000Z"

    manifest = manifest_of(exports, "2026-11-03")
    assert manifest.total_rows == 4
    assert [c["name"] for c in manifest.columns] == CHANGES_SCHEMA.names
    assert manifest.source["as_of_from"] == "2026-11-03T00:00:00Z"
    assert manifest.source["as_of_to"] == "2026-11-04T00:00:00Z"
    assert manifest.source["validation_results_max_id"] == 10
    assert manifest.source["changes"] == {"added": 1, "removed": 2, "status_changed": 1}
    assert manifest.source["changes_exported"] == ["added", "removed", "status_changed"]
    text = gzip.decompress((folder / "proxy_changes-2026-11-03.jsonl.gz").read_bytes()).decode()
    assert "hunter2" not in text
    assert "carol" not in text

    materialization = instance.get_latest_materialization_event(proxy_changes.key)
    assert materialization is not None
    assert materialization.asset_materialization is not None
    metadata = {k: v.value for k, v in materialization.asset_materialization.metadata.items()}
    assert (metadata["changes_added"], metadata["changes_removed"]) == (1, 2)
    assert metadata["dagster/partition_row_count"] == 4

    first_bytes = (folder / "proxy_changes-2026-11-03.jsonl.gz").read_bytes()
    run(database, exports, "2026-11-03", instance, format="jsonl")
    assert (folder / "proxy_changes-2026-11-03.jsonl.gz").read_bytes() == first_bytes


def test_status_transitions_land_in_the_day_they_happen(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    run(database, exports, "2026-11-01", instance, format="parquet")
    run(database, exports, "2026-11-02", instance, format="parquet")

    day1 = read_parquet(
        exports / "proxy_changes" / "dt=2026-11-01" / "proxy_changes-2026-11-01.parquet"
    )
    assert [(r["change"], r["url"], r["status_from"], r["status_to"]) for r in day1] == [
        ("status_changed", A, "unknown", "healthy"),
    ]
    day2 = read_parquet(
        exports / "proxy_changes" / "dt=2026-11-02" / "proxy_changes-2026-11-02.parquet"
    )
    # B was discovered and checked during the day: added, with the status it ended with,
    # not also status_changed. GONE and GONE_WITH_CREDENTIALS were still seen that day.
    assert [(r["change"], r["url"], r["status_from"], r["status_to"]) for r in day2] == [
        ("added", B, None, "healthy"),
        ("status_changed", A, "healthy", "unhealthy"),
    ]
    added, changed = day2
    assert added["source_url"] == "https://***:***@lists.example/x"
    assert added["country_code"] == "DE"
    assert str(added["discovered_at"]) == "2026-11-02 08:00:00+00:00"
    assert changed["consecutive_failures"] == 2  # the failure at 23:59:59.999999 counts
    assert str(changed["last_check_at"]) == "2026-11-02 23:59:59.999999+00:00"
    assert (
        pq.read_schema(
            exports / "proxy_changes" / "dt=2026-11-02" / "proxy_changes-2026-11-02.parquet"
        ).names
        == CHANGES_SCHEMA.names
    )


def test_a_day_without_changes_exports_an_empty_file(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    run(database, exports, "2026-11-04", instance)
    path = exports / "proxy_changes" / "dt=2026-11-04" / "proxy_changes-2026-11-04.csv.gz"
    with gzip.open(path, "rt", encoding="utf-8", newline="") as stream:
        lines = list(csv.reader(stream))
    assert lines == [CHANGES_SCHEMA.names]
    manifest = manifest_of(exports, "2026-11-04")
    assert manifest.total_rows == 0
    assert manifest.source["changes"] == {"added": 0, "removed": 0, "status_changed": 0}


def test_the_changes_filter_keeps_only_the_kinds_asked_for(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    run(database, exports, "2026-11-03", instance, format="jsonl", changes=["removed", "added"])
    folder = exports / "proxy_changes" / "dt=2026-11-03"
    rows = read_jsonl_gz(folder / "proxy_changes-2026-11-03.jsonl.gz")
    assert kinds_and_urls(rows) == [("added", C), ("removed", GONE_MASKED), ("removed", GONE)]
    manifest = manifest_of(exports, "2026-11-03")
    assert manifest.total_rows == 3
    assert manifest.source["changes"] == {"added": 1, "removed": 2, "status_changed": 1}
    assert manifest.source["changes_exported"] == ["added", "removed"]

    run(database, exports, "2026-11-03", instance, format="jsonl", changes=["status_changed"])
    rows = read_jsonl_gz(folder / "proxy_changes-2026-11-03.jsonl.gz")
    assert kinds_and_urls(rows) == [("status_changed", A)]


def test_an_empty_changes_filter_is_refused(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    result = materialize(
        [requested(proxy_changes)],
        partition_key="2026-11-03",
        instance=instance,
        resources=export_resources(database, exports),
        run_config=request_config(proxy_changes, {"changes": []}),
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error  # type: ignore[union-attr]
    assert failure is not None
    assert "changes is empty: list the kinds to export" in str(failure.to_string())
    assert not exports.exists() or not any(exports.rglob("*.gz"))


# The not-null fields of POOL_SCHEMA that pool_batches does not set.
POOL_DEFAULTS: dict[str, Any] = {
    "protocol": "http",
    "host": "h",
    "port": 1,
    "is_residential": False,
    "is_datacenter": True,
    "source": "fetched",
    "discovered_at": 0,
    "consecutive_successes": 0,
    "consecutive_failures": 0,
    "total_checks": 0,
    "total_successes": 0,
    "checks_7d": 0,
}


def pool_batches(*proxies: tuple[str, str]) -> list[pa.RecordBatch]:
    """A url-ordered pool of (url, health_status), two rows a batch."""
    rows = [{**POOL_DEFAULTS, "url": url, "health_status": status} for url, status in proxies]
    batches: list[pa.RecordBatch] = pa.Table.from_pylist(rows, schema=POOL_SCHEMA).to_batches(
        max_chunksize=2
    )
    return batches


def test_the_merge_reports_a_proxy_that_left_the_pool_and_drops_nothing() -> None:
    # Append-only history never shrinks the pool; the merge must still say so if it does.
    before = pool_batches(("a", "healthy"), ("b", "dead"), ("c", "healthy"), ("e", "unknown"))
    after = pool_batches(
        ("a", "healthy"), ("c", "dead"), ("d", "unknown"), ("e", "unknown"), ("f", "healthy")
    )
    found = [row for _, batch in diff_pools(iter(before), iter(after)) for row in batch.to_pylist()]
    assert sorted((r["change"], r["url"], r["status_from"], r["status_to"]) for r in found) == [
        ("added", "d", None, "unknown"),
        ("added", "f", None, "healthy"),
        ("removed", "b", "dead", None),
        ("status_changed", "c", "healthy", "dead"),
    ]

    # Removals from the pools and from orphaned history interleave by url.
    changes = PoolChanges(["removed"])
    try:
        for kind, batch in diff_pools(iter(pool_batches(("b", "dead"), ("d", "dead"))), iter([])):
            changes.add(kind, batch)
        orphans = pa.Table.from_pylist(
            [removed_row("a"), removed_row("c"), removed_row("e")], schema=CHANGES_SCHEMA
        )
        for batch in orphans.to_batches(max_chunksize=2):
            changes.add(REMOVED, batch, from_history=True)
        changes.finish()
        merged = [row["url"] for batch in changes.batches() for row in batch.to_pylist()]
        assert merged == ["a", "b", "c", "d", "e"]
        assert changes.counts == {"added": 0, "removed": 5, "status_changed": 0}
    finally:
        changes.close()


def removed_row(url: str) -> dict[str, Any]:
    return {
        "change": REMOVED,
        "status_from": "dead",
        "url": url,
        "health_status": "dead",
        "consecutive_successes": 0,
        "consecutive_failures": 3,
        "total_checks": 3,
        "total_successes": 0,
        "checks_7d": 3,
    }


def test_every_sample_day_exports_and_added_rows_match_discoveries(
    sample_deployment: SampleDeployment, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    database = sample_deployment.database
    source = ProxyWhirlSource(database=str(database))
    days = sample_days(sample_deployment)[:-1]  # the sample's days
    added = changed = 0
    for day in days:
        partition = day.isoformat()
        result = materialize(
            [configured(proxy_changes, {"format": "parquet"})],
            partition_key=partition,
            instance=instance,
            resources=export_resources(database, exports),
        )
        assert result.success
        rows = read_parquet(
            exports / "proxy_changes" / f"dt={partition}" / f"proxy_changes-{partition}.parquet"
        )
        added += sum(row["change"] == "added" for row in rows)
        # The status changes are exactly the pool's, rebuilt independently.
        expected = status_changes(source, day)
        assert {
            row["url"]: (row["status_from"], row["status_to"])
            for row in rows
            if row["change"] == "status_changed"
        } == expected
        changed += len(expected)
        assert all(row["change"] != "removed" for row in rows)  # the sample deletes nothing
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        (discovered,) = connection.execute(
            "SELECT count(*) FROM proxy_identities WHERE discovered_at >= ? AND discovered_at < ?",
            (days[0].isoformat(), (days[-1] + timedelta(days=1)).isoformat()),
        ).fetchone()
    connection.close()
    assert discovered > 0
    assert added == discovered
    assert changed > 0


def sample_days(sample: SampleDeployment) -> list[date]:
    """The sample's days and the day after."""
    span = (sample.last_day - sample.first_day).days
    return [sample.first_day + timedelta(days=n) for n in range(span + 2)]


def test_each_deleted_sample_proxy_is_removed_once_the_day_after_its_last_check(
    sample_deployment: SampleDeployment, tmp_path: Path
) -> None:
    database = tmp_path / "proxies.db"
    shutil.copy(sample_deployment.database, database)
    with sqlite3.connect(database) as connection:
        last_checks = dict(
            connection.execute(
                "SELECT proxy_url, max(validated_at) FROM validation_results GROUP BY proxy_url"
                " ORDER BY proxy_url LIMIT 7"
            ).fetchall()
        )
        connection.executemany(
            "DELETE FROM proxy_identities WHERE url = ?", [(url,) for url in last_checks]
        )
    connection.close()
    expected = {
        url: date.fromisoformat(last[:10]) + timedelta(days=1) for url, last in last_checks.items()
    }
    found: dict[str, date] = {}
    with ProxyWhirlSource(database=str(database), batch_rows=3).open_snapshot() as snapshot:
        for day in sample_days(sample_deployment):
            changes = pool_changes(snapshot, day, ["removed"])
            try:
                for batch in changes.batches():
                    for row in batch.to_pylist():
                        assert row["url"] not in found, f"{row['url']} removed twice"
                        found[row["url"]] = day
                        assert row["status_from"] == row["health_status"]
                        assert row["total_checks"] > 0
            finally:
                changes.close()
    assert found == expected


def status_changes(source: ProxyWhirlSource, day: date) -> dict[str, tuple[str, str]]:
    with source.open_snapshot() as snapshot:
        before = {
            row["url"]: row["health_status"]
            for batch in snapshot.proxy_pool(day)
            for row in batch.to_pylist()
        }
        after = {
            row["url"]: row["health_status"]
            for batch in snapshot.proxy_pool(day + timedelta(days=1))
            for row in batch.to_pylist()
        }
    return {
        url: (before[url], status)
        for url, status in after.items()
        if url in before and before[url] != status
    }
