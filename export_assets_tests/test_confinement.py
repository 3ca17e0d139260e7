"""Nothing outside the destination, ever: tampered manifests, keys and symlinks are refused.

Each path the exporter takes from a manifest, a partition key or an asset name is checked
before anything is read or deleted, in the manifest parser and again in the destinations.
Every test plants a victim file (or object) outside the destination and byte-compares it,
and the whole destination, afterwards.
"""
# No "from __future__ import annotations": Dagster reads the test assets' annotations.

import json
import os
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from dagster import DagsterInstance

from export_assets.cli import main
from export_assets.defs.operations.failures import error_message, user_error
from export_assets.defs.resources.store import ExportStore
from export_assets.lib.exports.destinations import (
    Destination,
    LocalDestination,
    UnsafePathError,
)
from export_assets.lib.exports.manifest import (
    ExportManifest,
    ManifestError,
    ManifestFile,
    manifest_key,
    partition_folder,
    sha256_hex,
)
from export_assets.lib.exports.retention import apply_retention
from export_assets.lib.exports.s3 import S3Destination
from export_assets.lib.restore.verify import RestoreError, verify_export
from export_assets_tests.s3_server import MotoServer
from export_assets_tests.test_partition_lease import ASSET, DAY, run

TAMPERED = "../../../victim.txt"
VICTIM = b"not the exporter's: must never change\n"


@pytest.fixture(params=["disk", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, moto_server: MotoServer) -> ExportStore:
    """A destination, with a victim beside it: ``tmp_path/victim.txt`` or ``team/victim.txt``."""
    if request.param == "disk":
        (tmp_path / "victim.txt").write_bytes(VICTIM)
        return ExportStore(destination=str(tmp_path / "exports"))
    client = moto_server.client()
    bucket = f"confined-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="team/victim.txt", Body=VICTIM)
    return ExportStore(destination=f"s3://{bucket}/team/exports", s3=moto_server.resource())


def world(store: ExportStore, tmp_path: Path) -> dict[str, bytes]:
    """Everything the test can see: the destination and what is beside it."""
    destination = store.open()
    if isinstance(destination, LocalDestination):
        return {
            p.relative_to(tmp_path).as_posix(): p.read_bytes()
            for p in tmp_path.rglob("*")
            if p.is_file() and not p.is_symlink()
        }
    assert isinstance(destination, S3Destination)
    bucket = destination.bucket
    listed = destination.client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        item["Key"]: destination.client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        for item in listed
    }


def victim_of(store: ExportStore, tmp_path: Path) -> bytes:
    return world(store, tmp_path)[
        "victim.txt" if "s3" not in store.destination else "team/victim.txt"
    ]


def tamper(destination: Destination, asset: str, partition: str, path: str) -> None:
    """Add ``path`` to the files of a published manifest, as an attacker with write access."""
    key = manifest_key(asset, partition)
    data = destination.read_bytes(key)
    assert data is not None
    raw = json.loads(data)
    raw["files"].append(
        {"path": path, "bytes": len(VICTIM), "sha256": sha256_hex(VICTIM), "rows": 1}
    )
    destination.write_bytes(key, json.dumps(raw, indent=2).encode())


def test_publish_refuses_a_tampered_manifest_and_deletes_nothing(
    store: ExportStore, tmp_path: Path, instance: DagsterInstance
) -> None:
    assert run(store, "csv", instance).success
    destination = store.open()
    tamper(destination, ASSET, DAY, TAMPERED)
    before = world(store, tmp_path)

    result = run(store, "jsonl", instance)  # another format: the old files would be deleted

    assert not result.success
    [failure] = result.get_step_failure_events()
    assert failure.step_failure_data.error is not None
    error = user_error(failure.step_failure_data.error)
    assert error.cls_name == "ManifestError"
    message = error_message(error)
    assert message.startswith(f"{destination.uri(manifest_key(ASSET, DAY))} is refused: ")
    assert f"files[1].path {TAMPERED!r} is refused" in message
    assert "nothing it lists was read or deleted" in message
    assert world(store, tmp_path) == before
    assert victim_of(store, tmp_path) == VICTIM


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "..",
        "dt=x/../../victim.txt",
        "..\\..\\victim.txt",
        "a\0b",
        ".hidden.tmp",
        "_manifest.json",
    ],
)
def test_the_manifest_parser_refuses_every_unsafe_name(path: str) -> None:
    manifest = ExportManifest(
        asset=ASSET,
        partition=DAY,
        run_id="r",
        created_at="2026-11-21T00:00:00Z",
        format="csv",
        compression="gzip",
        files=[ManifestFile(path, 1, "0" * 64, 1)],
        total_rows=1,
        columns=[],
        source={},
        credential_policy="redact",
        previous_manifest=None,
    )
    with pytest.raises(ManifestError) as caught:
        ExportManifest.from_json(manifest.to_json(), where="s3://b/x/_manifest.json")
    assert str(caught.value).startswith(
        f"s3://b/x/_manifest.json is refused: files[0].path {path!r} is refused"
    )


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("asset", "../raced", "asset name '../raced' is refused"),
        ("partition", "2026-11-20/../..", "partition key '2026-11-20/../..' is refused"),
        ("previous_manifest", {"partition": "../../x", "sha256": "0"}, "partition key '../../x'"),
    ],
)
def test_the_manifest_parser_refuses_unsafe_asset_and_partition(
    field: str, value: Any, said: str
) -> None:
    manifest = ExportManifest(
        asset=ASSET,
        partition=DAY,
        run_id="r",
        created_at="2026-11-21T00:00:00Z",
        format="csv",
        compression="gzip",
        files=[],
        total_rows=0,
        columns=[],
        source={},
        credential_policy="redact",
        previous_manifest=None,
    )
    raw = json.loads(manifest.to_json())
    raw[field] = value
    with pytest.raises(ManifestError, match="is refused") as caught:
        ExportManifest.from_json(json.dumps(raw).encode())
    assert said in str(caught.value)


def expired_partition(destination: Destination, day: str, files: dict[str, bytes]) -> None:
    """A partition published long ago: ``files`` and a manifest listing them."""
    folder = partition_folder(ASSET, day)
    for name, data in files.items():
        destination.write_bytes(f"{folder}/{name}", data)
    manifest = ExportManifest(
        asset=ASSET,
        partition=day,
        run_id="r",
        created_at=f"{day}T01:00:00Z",
        format="csv",
        compression="gzip",
        files=[ManifestFile(n, len(d), sha256_hex(d), 1) for n, d in files.items()],
        total_rows=len(files),
        columns=[],
        source={},
        credential_policy="redact",
        previous_manifest=None,
    )
    destination.write_bytes(manifest_key(ASSET, day), manifest.to_json())


def test_retention_skips_a_tampered_manifest_and_says_why(
    store: ExportStore, tmp_path: Path
) -> None:
    destination = store.open()
    expired_partition(destination, "2026-10-01", {"raced-2026-10-01.csv.gz": b"a" * 10})
    expired_partition(destination, "2026-10-02", {"raced-2026-10-02.csv.gz": b"b" * 10})
    tamper(destination, ASSET, "2026-10-01", TAMPERED)
    before = world(store, tmp_path)

    report = apply_retention(destination, keep_days=0, today=date(2026, 11, 21))

    assert [p.partition for p in report.deleted] == ["2026-10-02"]
    assert report.deleted_bytes == 10 + len(before[next(k for k in before if "10-02/_m" in k)])
    [skipped] = [line for line in report.lines() if line.startswith("skipped")]
    assert skipped.startswith(f"skipped {ASSET}/dt=2026-10-01: ")
    assert f"files[1].path {TAMPERED!r} is refused" in skipped
    after = world(store, tmp_path)
    assert {k: v for k, v in before.items() if "2026-10-02" not in k} == after
    assert victim_of(store, tmp_path) == VICTIM


def test_restore_refuses_a_tampered_manifest(tmp_path: Path) -> None:
    (tmp_path / "victim.txt").write_bytes(VICTIM)
    destination = LocalDestination(tmp_path / "exports")
    expired_partition(destination, DAY, {f"raced-{DAY}.json": b"[]\n"})
    folder = tmp_path / "exports" / ASSET / f"dt={DAY}"
    raw = json.loads((folder / "_manifest.json").read_bytes())
    raw["format"] = "json"
    raw["files"][0]["path"] = TAMPERED
    (folder / "_manifest.json").write_text(json.dumps(raw))
    with pytest.raises(RestoreError) as caught:
        verify_export(folder, ASSET, ("json",))
    assert str(caught.value).startswith(f"{folder / '_manifest.json'} is refused: ")
    assert f"files[0].path {TAMPERED!r} is refused" in str(caught.value)
    assert (tmp_path / "victim.txt").read_bytes() == VICTIM


def test_restore_refuses_a_data_file_that_links_outside(tmp_path: Path) -> None:
    (tmp_path / "victim.txt").write_bytes(VICTIM)
    destination = LocalDestination(tmp_path / "exports")
    name = f"raced-{DAY}.json"
    expired_partition(destination, DAY, {name: VICTIM})
    folder = tmp_path / "exports" / ASSET / f"dt={DAY}"
    raw = json.loads((folder / "_manifest.json").read_bytes())
    raw["format"] = "json"
    (folder / "_manifest.json").write_text(json.dumps(raw))
    (folder / name).unlink()
    (folder / name).symlink_to(tmp_path / "victim.txt")  # same bytes: only the link gives it away
    with pytest.raises(RestoreError, match=r"is a symlink to .*victim\.txt, outside "):
        verify_export(folder, ASSET, ("json",))


def test_link_refuses_a_tampered_manifest_and_bad_arguments(
    store: ExportStore,
    tmp_path: Path,
    instance: DagsterInstance,
    moto_server: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert run(store, "csv", instance).success
    destination = store.open()
    tamper(destination, ASSET, DAY, TAMPERED)
    before = world(store, tmp_path)
    monkeypatch.setenv("EXPORT_DESTINATION", store.destination)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server.endpoint_url)

    result = CliRunner().invoke(main, ["link", ASSET, DAY])
    assert result.exit_code == 1, result.output
    assert f"files[1].path {TAMPERED!r} is refused" in result.output
    assert "victim" not in result.output.replace(TAMPERED, "")  # no link to it was printed

    for asset, partition, said in (
        (ASSET, "../../victim", "partition key '../../victim' is refused"),
        ("../victim", DAY, "asset name '../victim' is refused"),
    ):
        result = CliRunner().invoke(main, ["link", asset, partition])
        assert result.exit_code == 1, result.output
        assert said in result.output
    assert world(store, tmp_path) == before


def test_a_partition_folder_linking_outside_is_never_followed(
    tmp_path: Path, instance: DagsterInstance
) -> None:
    outside = tmp_path / "elsewhere"
    exports = tmp_path / "exports"
    expired_partition(LocalDestination(outside), "2026-10-01", {"raced-2026-10-01.csv.gz": VICTIM})
    (exports / ASSET).mkdir(parents=True)
    (exports / ASSET / "dt=2026-10-01").symlink_to(outside / ASSET / "dt=2026-10-01")
    (exports / ASSET / f"dt={DAY}").symlink_to(outside / ASSET / "dt=2026-10-01")
    before = world(ExportStore(destination=str(exports)), tmp_path)

    report = apply_retention(LocalDestination(exports), keep_days=0, today=date(2026, 11, 21))
    assert report.deleted == []
    [skipped] = [
        line for line in report.lines() if line.startswith(f"skipped {ASSET}/dt=2026-10-01")
    ]
    assert "resolves to" in skipped
    assert "outside the export destination" in skipped

    result = run(ExportStore(destination=str(exports)), "csv", instance)  # into the linked DAY
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert failure.step_failure_data.error is not None
    error = user_error(failure.step_failure_data.error)
    assert error.cls_name == "UnsafePathError"
    assert "outside the export destination" in error_message(error)
    assert world(ExportStore(destination=str(exports)), tmp_path) == before


@pytest.mark.parametrize(
    "key",
    [
        "../victim.txt",
        "raced/../../victim.txt",
        "/etc/passwd",
        "raced//x",
        "raced/./x",
        "raced\\..\\x",
        "raced/x\0y",
        "",
    ],
)
def test_destinations_refuse_keys_that_escape(
    key: str, tmp_path: Path, moto_server: MotoServer
) -> None:
    local = LocalDestination(tmp_path / "exports")
    s3 = S3Destination(moto_server.client(), "any-bucket", "team/exports")
    for attempt in (
        lambda: local.path(key),
        lambda: local.delete(key),
        lambda: local.read_bytes(key),
        lambda: s3.object_key(key),
    ):
        with pytest.raises((UnsafePathError, ValueError)) as caught:
            attempt()
        assert repr(key) in str(caught.value) or key == ""
    assert not os.path.exists(tmp_path / "exports")
