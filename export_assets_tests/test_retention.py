"""Retention deletes exactly the expired partitions' listed files, on disk and on S3."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from dagster import DagsterInstance

from export_assets.cli import main
from export_assets.defs.operations.retention import retention_job
from export_assets.defs.resources.store import ExportStore
from export_assets.lib.exports.destinations import Destination, LocalDestination
from export_assets.lib.exports.lease import LeaseHolder, lease_key
from export_assets.lib.exports.manifest import (
    ExportManifest,
    ManifestFile,
    manifest_key,
    sha256_hex,
)
from export_assets.lib.exports.retention import apply_retention
from export_assets.lib.exports.s3 import S3Destination
from export_assets_tests.s3_server import MotoServer

TODAY = date(2026, 11, 21)
ASSETS = ("proxy_list", "validation_events")


def publish(destination: Destination, asset: str, day: date, size: int = 100) -> list[str]:
    """A partition as the exporter publishes it: a data file, then its manifest."""
    partition = day.isoformat()
    name = f"{asset}-{partition}.csv.gz"
    data = bytes([day.day]) * size
    folder = f"{asset}/dt={partition}"
    destination.write_bytes(f"{folder}/{name}", data)
    manifest = ExportManifest(
        asset=asset,
        partition=partition,
        run_id=uuid.uuid4().hex,
        created_at="2026-11-21T00:15:00Z",
        format="csv",
        compression="gzip",
        files=[ManifestFile(name, len(data), sha256_hex(data), 3)],
        total_rows=3,
        columns=[],
        source={},
        credential_policy="redact",
        previous_manifest=None,
    )
    destination.write_bytes(manifest_key(asset, partition), manifest.to_json())
    return [f"{folder}/{name}", manifest_key(asset, partition)]


def populate(destination: Destination, first: date, days: int) -> dict[date, list[str]]:
    """Every asset for ``days`` days from ``first``, and files retention must never touch."""
    keys: dict[date, list[str]] = {}
    for offset in range(days):
        day = first + timedelta(days=offset)
        keys[day] = [key for asset in ASSETS for key in publish(destination, asset, day)]
    return keys


UNRELATED = (
    "proxy_list/dt=2026-10-01/notes.txt",  # in an expired partition, not in its manifest
    "proxy_list/README.txt",
    "proxy_list/dt=2026-09-01/orphan.csv",  # a partition folder without a manifest
    "other/data.bin",
)


def keys_on(destination: Destination) -> set[str]:
    if isinstance(destination, LocalDestination):
        return {
            p.relative_to(destination.root).as_posix()
            for p in destination.root.rglob("*")
            if p.is_file()
        }
    assert isinstance(destination, S3Destination)
    listed = destination.client.list_objects_v2(Bucket=destination.bucket)
    return {item["Key"] for item in listed.get("Contents", [])}


def s3_key(destination: Destination, key: str) -> str:
    return destination.object_key(key) if isinstance(destination, S3Destination) else key


@pytest.fixture(params=["disk", "s3"])
def destination(
    request: pytest.FixtureRequest, tmp_path: Path, moto_server: MotoServer
) -> Destination:
    if request.param == "disk":
        return LocalDestination(tmp_path / "exports")
    client = moto_server.client()
    bucket = f"retention-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    outside = "exports-other/proxy_list/dt=2026-10-01/x.csv.gz"  # beside the prefix
    client.put_object(Bucket=bucket, Key=outside, Body=b"x")
    return S3Destination(client, bucket, "team/exports")


def test_expired_partitions_go_and_nothing_else(destination: Destination) -> None:
    keys = populate(destination, date(2026, 10, 1), 10)  # 2026-10-01 .. 2026-10-10
    for key in UNRELATED:
        destination.write_bytes(key, b"keep me")
    before = keys_on(destination)

    dry = apply_retention(destination, keep_days=45, dry_run=True, today=TODAY)
    assert keys_on(destination) == before
    cutoff = TODAY - timedelta(days=45)  # 2026-10-07: kept; the 6 days before: expired
    expired_days = [day for day in keys if day < cutoff]
    assert len(expired_days) == 6
    assert [(p.partition, p.asset) for p in dry.deleted] == [
        (day.isoformat(), asset) for day in expired_days for asset in ASSETS
    ]
    assert "would delete 12 partitions" in dry.lines()[-1]

    report = apply_retention(destination, keep_days=45, today=TODAY)
    deleted = {s3_key(destination, key) for day in expired_days for key in keys[day]}
    assert keys_on(destination) == before - deleted
    assert [p.partition for p in report.deleted] == [p.partition for p in dry.deleted]
    assert report.deleted_bytes == sum(p.bytes for p in dry.deleted)
    for key in UNRELATED:  # unlisted files, and the folder without a manifest, stay
        assert destination.read_bytes(key) == b"keep me"
    assert "skipped proxy_list/dt=2026-09-01: no readable _manifest.json" in report.lines()
    assert apply_retention(destination, keep_days=45, today=TODAY).deleted == []


def test_over_the_size_limit_the_oldest_go_first(destination: Destination) -> None:
    populate(destination, date(2026, 11, 11), 10)  # all within 30 days
    partitions = apply_retention(destination, keep_days=30, dry_run=True, today=TODAY).kept
    per_day = sum(p.bytes for p in partitions if p.partition == "2026-11-20")
    report = apply_retention(destination, keep_days=30, max_total_bytes=3 * per_day, today=TODAY)
    assert sorted({p.partition for p in report.deleted}) == [
        f"2026-11-{day}" for day in range(11, 18)
    ]
    assert sorted({p.partition for p in report.kept}) == ["2026-11-18", "2026-11-19", "2026-11-20"]
    assert destination.read_bytes(manifest_key("proxy_list", "2026-11-17")) is None
    assert destination.read_bytes(manifest_key("proxy_list", "2026-11-18")) is not None


def test_the_cli_reports_and_deletes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exports = tmp_path / "exports"
    destination = LocalDestination(exports)
    today = datetime.now(UTC).date()
    populate(destination, today - timedelta(days=40), 20)
    monkeypatch.setenv("EXPORT_DESTINATION", str(exports))
    before = keys_on(destination)

    dry = CliRunner().invoke(main, ["retention", "--keep-days", "30", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert keys_on(destination) == before
    first = (today - timedelta(days=40)).isoformat()
    assert f"would delete proxy_list {first} (2 files," in dry.output
    assert "would delete 20 partitions" in dry.output  # 10 days x 2 assets

    real = CliRunner().invoke(main, ["retention", "--keep-days", "30"])
    assert real.exit_code == 0, real.output
    assert f"deleted proxy_list {first} (2 files," in real.output
    assert len(keys_on(destination)) == len(before) - 40
    assert not (exports / "proxy_list" / f"dt={first}").exists()  # the emptied folder too


def test_bad_options_are_refused_and_nothing_is_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exports = tmp_path / "exports"
    destination = LocalDestination(exports)
    populate(destination, datetime.now(UTC).date() - timedelta(days=60), 3)
    before = keys_on(destination)
    monkeypatch.setenv("EXPORT_DESTINATION", str(exports))
    result = CliRunner().invoke(main, ["retention", "--keep-days", "-1"])
    assert result.exit_code == 2
    assert "-1 is not in the range x>=0" in result.output
    monkeypatch.setenv("EXPORT_RETENTION_DAYS", "a month")
    result = CliRunner().invoke(main, ["retention"])
    assert result.exit_code == 1
    assert "EXPORT_RETENTION_DAYS='a month' is not a whole number of days" in result.output
    assert keys_on(destination) == before


def test_the_retention_job_deletes_and_logs_it(tmp_path: Path, instance: DagsterInstance) -> None:
    exports = tmp_path / "exports"
    destination = LocalDestination(exports)
    today = datetime.now(UTC).date()
    populate(destination, today - timedelta(days=3), 3)
    result = retention_job.execute_in_process(
        run_config={"ops": {"apply_export_retention": {"config": {"keep_days": 1}}}},
        resources={"export_store": ExportStore(destination=str(exports))},
        instance=instance,
    )
    assert result.success
    expired = [(today - timedelta(days=n)).isoformat() for n in (3, 2)]
    for partition in expired:
        assert destination.read_bytes(manifest_key("proxy_list", partition)) is None
    kept = (today - timedelta(days=1)).isoformat()
    assert destination.read_bytes(manifest_key("proxy_list", kept)) is not None
    messages = [event.message or "" for event in instance.all_logs(result.run_id)]
    assert any(f"deleted proxy_list {expired[0]} (2 files" in m for m in messages)
    [output] = [e for e in result.all_node_events if e.is_successful_output]
    metadata = output.step_output_data.metadata
    assert metadata["deleted_partitions"].value == 4


def test_byte_totals_count_only_what_was_deleted(destination: Destination) -> None:
    data_key, key = publish(destination, "proxy_list", date(2026, 10, 1), size=1000)
    manifest_bytes = len(destination.read_bytes(key) or b"")
    destination.delete(data_key)  # listed, but already gone: nothing to delete or count

    dry = apply_retention(destination, keep_days=30, dry_run=True, today=TODAY)
    report = apply_retention(destination, keep_days=30, today=TODAY)

    for done in (dry, report):
        [partition] = done.deleted
        assert partition.files == (key,)
        assert done.deleted_bytes == manifest_bytes
    assert f"deleted proxy_list 2026-10-01 (1 files, {manifest_bytes:,} bytes)" in report.lines()
    assert destination.read_bytes(key) is None


def _lease(destination: Destination, asset: str, day: str, **fields: object) -> str:
    values: dict[str, Any] = {
        "run_id": "gone",
        "host": "another-host",
        "pid": 1,
        "pid_started": None,
        "token": uuid.uuid4().hex,
        "acquired_at": 0.0,
        "expires_at": 1.0,
        **fields,
    }
    holder = LeaseHolder(**values)
    key = lease_key(asset, day)
    destination.write_bytes(key, holder.to_json())
    return key


def test_debris_of_killed_runs_is_removed_reported_and_never_counted(
    destination: Destination,
) -> None:
    populate(destination, date(2026, 11, 18), 3)
    stale = _lease(destination, "proxy_list", "2026-11-19")  # its holder expired long ago
    live = _lease(destination, "proxy_list", "2026-11-20", expires_at=time.time() + 3600)
    expected: list[str] = []
    if isinstance(destination, LocalDestination):
        seven_hours_ago = time.time() - 7 * 3600
        old = {
            f"proxy_list/dt=2026-11-19/.proxy_list-2026-11-19.csv.gz.{uuid.uuid4().hex}.tmp",
            # a killed first export: only a temporary file in its folder
            f"validation_events/dt=2026-11-21/.validation_events-2026-11-21.csv.gz.{uuid.uuid4().hex}.tmp",
        }
        for key in old:
            destination.write_bytes(key, b"half a file")
            os.utime(destination.path(key), (seven_hours_ago, seven_hours_ago))
        fresh = f"proxy_list/dt=2026-11-20/.proxy_list-2026-11-20.csv.gz.{uuid.uuid4().hex}.tmp"
        destination.write_bytes(fresh, b"another run, still writing")
        expected += sorted(old)
    else:
        assert isinstance(destination, S3Destination)
        # moto dates every upload 2010: old enough. One in a folder with nothing else.
        upload = destination.object_key("validation_events/dt=2026-11-21/v.csv.gz")
        destination.client.create_multipart_upload(Bucket=destination.bucket, Key=upload)
        expected.append(upload)

    before = keys_on(destination)
    dry = apply_retention(destination, keep_days=30, dry_run=True, today=TODAY)
    assert keys_on(destination) == before
    report = apply_retention(destination, keep_days=30, today=TODAY)
    assert dry.debris == report.debris
    assert sorted(entry.split(" (")[0] for entry in report.debris) == sorted([*expected, stale])
    assert report.deleted == []
    assert [(p.asset, p.partition) for p in report.kept] == [
        (asset, f"2026-11-{day}") for day in (18, 19, 20) for asset in ASSETS
    ]
    assert report.kept_bytes == dry.kept_bytes  # debris is never counted as an export
    [lease_line] = [entry for entry in report.debris if entry.startswith(stale)]
    assert lease_line.endswith("its lease expired")
    assert f"removed debris {lease_line}" in report.lines()
    assert report.lines()[-1].endswith(f"removed {len(expected) + 1} debris of killed runs")
    gone = {s3_key(destination, stale)}
    if isinstance(destination, LocalDestination):
        gone |= set(expected)
    assert keys_on(destination) == before - gone
    assert destination.read_bytes(live) is not None
    if isinstance(destination, LocalDestination):
        assert destination.read_bytes(fresh) is not None
        assert not destination.path("validation_events/dt=2026-11-21").exists()
    else:
        uploads = destination.client.list_multipart_uploads(Bucket=destination.bucket)
        assert uploads.get("Uploads", []) == []
