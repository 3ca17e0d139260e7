"""One writer per partition: two runs of one partition at once never break or lose it.

Real runs (``materialize`` in two threads, on disk and on moto's S3 server) race on one
partition in different formats; a test hook holds the first run just before its manifest
is published, so the race is the same every time. Lease takeovers use real processes: a
holder killed with SIGKILL, and several processes taking one lease at once.
"""
# No "from __future__ import annotations": Dagster reads the test assets' annotations.

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pytest
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DagsterInstance,
    ExecuteInProcessResult,
    asset,
    materialize,
)

from export_assets.defs.operations.failures import error_message, user_error
from export_assets.defs.partitions import daily_partitions
from export_assets.defs.resources import io_manager
from export_assets.defs.resources.io_manager import ExportIOManager
from export_assets.defs.resources.store import ExportStore
from export_assets.lib.exports import Export, ExportOptions
from export_assets.lib.exports.destinations import Destination, LocalDestination
from export_assets.lib.exports.export import Format
from export_assets.lib.exports.lease import (
    LeaseHolder,
    PartitionBusyError,
    PartitionLease,
    lease_key,
)
from export_assets.lib.exports.manifest import ExportManifest, manifest_key
from export_assets.lib.exports.s3 import S3Destination
from export_assets_tests.s3_server import MotoServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DAY = "2026-11-20"
ASSET = "raced"
SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("name", pa.string())])
ROOT = Path(__file__).resolve().parents[1]


def raced_asset(format: Format, rows: int = 500) -> AssetsDefinition:
    """An export asset of ``rows`` rows in ``format`` (no retry policy)."""

    @asset(partitions_def=daily_partitions, name=ASSET)
    def raced(context: AssetExecutionContext) -> Export:
        batch = pa.RecordBatch.from_pydict(
            {"id": list(range(rows)), "name": [f"proxy-{i}" for i in range(rows)]}, schema=SCHEMA
        )
        return Export(
            schema=SCHEMA,
            batches=iter([batch]),
            options=ExportOptions(
                format=format, compression="none" if format == "parquet" else "gzip"
            ),
            source={},
        )

    return raced


@pytest.fixture(params=["disk", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, moto_server: MotoServer) -> ExportStore:
    if request.param == "disk":
        return ExportStore(destination=str(tmp_path / "exports"))
    bucket = f"lease-{uuid.uuid4().hex[:12]}"
    moto_server.client().create_bucket(Bucket=bucket)
    return ExportStore(destination=f"s3://{bucket}/team/exports", s3=moto_server.resource())


def run(
    store: ExportStore,
    format: Format,
    instance: DagsterInstance,
    wait: float = 60.0,
    rows: int = 500,
) -> ExecuteInProcessResult:
    return materialize(
        [raced_asset(format, rows)],
        partition_key=DAY,
        resources={"io_manager": ExportIOManager(store=store, lease_wait_seconds=wait)},
        instance=instance,
        raise_on_error=False,
    )


def everything(destination: Destination) -> dict[str, bytes]:
    """Every file or object of the destination (hidden ones too) with its bytes."""
    if isinstance(destination, LocalDestination):
        root = destination.root
        if not root.exists():
            return {}
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
        }
    assert isinstance(destination, S3Destination)
    client: S3Client = destination.client
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=destination.bucket)
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    prefix = destination.prefix + "/"
    return {
        key.removeprefix(prefix): client.get_object(Bucket=destination.bucket, Key=key)[
            "Body"
        ].read()
        for key in keys
    }


def assert_consistent(destination: Destination) -> ExportManifest:
    """The published manifest lists exactly the partition's files, with their sha256."""
    files = everything(destination)
    manifest = ExportManifest.from_json(files[manifest_key(ASSET, DAY)])
    folder = f"{ASSET}/dt={DAY}/"
    assert sorted(files) == sorted(
        [manifest_key(ASSET, DAY), *(folder + entry.path for entry in manifest.files)]
    )
    for entry in manifest.files:
        data = files[folder + entry.path]
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry.bytes, entry.sha256)
    return manifest


@pytest.fixture
def race_instance(disk_instance: DagsterInstance) -> DagsterInstance:
    """Runs race from two threads here, each through its own instance object on this storage
    on disk, as two processes share an instance."""
    return disk_instance


@pytest.fixture
def hold_manifest_write() -> Iterator[tuple[threading.Event, threading.Event, list[str]]]:
    """A hook that holds the run writing ``jsonl`` just before its manifest is published.

    Yields (reached, release, fail): the run sets ``reached`` and waits for ``release``;
    if ``fail`` holds a message then, the run fails with it there.
    """
    reached, release = threading.Event(), threading.Event()
    fail: list[str] = []

    def hook(key: str, manifest: ExportManifest) -> None:
        if manifest.format == "jsonl":
            reached.set()
            assert release.wait(60), "the test never released the held run"
            if fail:
                raise RuntimeError(fail[0])

    io_manager.before_manifest_write = hook
    try:
        yield reached, release, fail
    finally:
        release.set()
        io_manager.before_manifest_write = None


def in_thread(
    store: ExportStore, format: Format, instance: DagsterInstance
) -> tuple[threading.Thread, list[Any]]:
    """``run`` in a thread, through its own instance on the same storage: as a second
    process would run it (one instance object is not meant to be shared by threads)."""
    out: list[Any] = []

    def target() -> None:
        with DagsterInstance.from_config(str(instance.root_directory)) as own:
            out.append(run(store, format, own))

    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


def wait_for_log(instance: DagsterInstance, text: str, not_run: str) -> str:
    """The id of the run (other than ``not_run``) that logged ``text``; waits for it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for record in instance.get_runs():
            if record.run_id == not_run:
                continue
            if any(text in (event.message or "") for event in instance.all_logs(record.run_id)):
                return record.run_id
        time.sleep(0.05)
    raise AssertionError(f"no run logged {text!r}")


def test_an_overlapping_run_waits_and_publishes_after_the_first(
    store: ExportStore,
    race_instance: DagsterInstance,
    hold_manifest_write: tuple[threading.Event, threading.Event, list[str]],
) -> None:
    reached, release, _ = hold_manifest_write
    destination = store.open()
    assert run(store, "csv", race_instance).success  # the good version before the race
    first, first_out = in_thread(store, "jsonl", race_instance)
    assert reached.wait(60)
    [held] = [
        r.run_id for r in race_instance.get_runs() if r.run_id not in _finished(race_instance)
    ]
    holder = LeaseHolder.from_json(everything(destination)[lease_key(ASSET, DAY)])
    assert holder is not None
    assert holder.run_id == held

    second, second_out = in_thread(store, "parquet", race_instance)
    waiting = wait_for_log(race_instance, "waiting up to 60 s", not_run=held)
    # The second run waits at the lease: nothing of it is published while the first holds it.
    assert (
        ExportManifest.from_json(everything(destination)[manifest_key(ASSET, DAY)]).format == "csv"
    )
    release.set()
    first.join(60)
    second.join(60)
    [first_result], [second_result] = first_out, second_out
    assert first_result.success
    assert second_result.success
    assert second_result.run_id == waiting

    manifest = assert_consistent(destination)  # no lease, no temporary file, no orphan
    assert (manifest.run_id, manifest.format) == (second_result.run_id, "parquet")


def _finished(instance: DagsterInstance) -> set[str]:
    from dagster import DagsterRunStatus

    return {
        r.run_id
        for r in instance.get_runs()
        if r.status in {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE}
    }


def test_a_busy_partition_fails_the_second_run_naming_the_holder_and_a_failed_run_loses_nothing(
    store: ExportStore,
    race_instance: DagsterInstance,
    hold_manifest_write: tuple[threading.Event, threading.Event, list[str]],
) -> None:
    reached, release, fail = hold_manifest_write
    destination = store.open()
    assert run(store, "csv", race_instance).success
    good = everything(destination)

    fail.append("the manifest write failed")
    first, first_out = in_thread(store, "jsonl", race_instance)
    assert reached.wait(60)
    [held] = [
        r.run_id for r in race_instance.get_runs() if r.run_id not in _finished(race_instance)
    ]
    second = run(store, "parquet", race_instance, wait=0.5)  # the first is held: it cannot finish

    assert not second.success
    [failure] = second.get_step_failure_events()
    assert failure.step_failure_data.error is not None
    error = user_error(failure.step_failure_data.error)
    assert error.cls_name == "PartitionBusyError"
    message = error_message(error)
    assert f"{ASSET} {DAY} is being exported by run {held} (pid {os.getpid()} on " in message
    assert "waited 0.5 s for it" in message
    assert "retried by its retry policy, or run it again" in message

    release.set()
    first.join(60)
    [first_result] = first_out
    assert not first_result.success
    # Neither the refused run nor the failed one touched the good version; nothing is left.
    assert everything(destination) == good
    assert_consistent(destination)


def test_a_failed_run_of_the_same_format_puts_the_previous_file_back(
    store: ExportStore, instance: DagsterInstance
) -> None:
    destination = store.open()
    assert run(store, "csv", instance).success
    good = everything(destination)

    def fail(key: str, manifest: ExportManifest) -> None:
        # The new csv.gz has already replaced the good one under the same name.
        [data] = [k for k in everything(destination) if k.endswith(".csv.gz")]
        assert everything(destination)[data] != good[data]
        raise RuntimeError("the manifest write failed")

    io_manager.before_manifest_write = fail
    try:
        result = run(store, "csv", instance, rows=700)
    finally:
        io_manager.before_manifest_write = None
    assert not result.success
    assert everything(destination) == good  # byte for byte, no copy left behind
    assert_consistent(destination)


# --- the lease itself ---------------------------------------------------------------------


@pytest.fixture(params=["disk", "s3"])
def destination(
    request: pytest.FixtureRequest, tmp_path: Path, moto_server: MotoServer
) -> Destination:
    if request.param == "disk":
        return LocalDestination(tmp_path / "exports")
    client = moto_server.client()
    bucket = f"lease-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return S3Destination(client, bucket, "x")


def plant_lease(destination: Destination, **fields: Any) -> LeaseHolder:
    now = time.time()
    holder = LeaseHolder(
        **{
            "run_id": "other-run",
            "host": "other-host",
            "pid": 4242,
            "pid_started": None,
            "token": uuid.uuid4().hex,
            "acquired_at": now - 10,
            "expires_at": now + 3600,
            **fields,
        }
    )
    assert destination.replace_if(lease_key(ASSET, DAY), holder.to_json(), None) is not None
    return holder


def test_a_live_lease_is_respected_and_named(destination: Destination) -> None:
    plant_lease(destination)
    lease = PartitionLease(destination, ASSET, DAY, "mine", wait_seconds=0.3)
    with pytest.raises(PartitionBusyError) as caught:
        lease.acquire()
    assert str(caught.value).startswith(
        f"{ASSET} {DAY} is being exported by run other-run (pid 4242 on other-host, since "
    )
    holder = LeaseHolder.from_json(everything(destination)[lease_key(ASSET, DAY)])
    assert holder is not None
    assert holder.run_id == "other-run"  # untouched


@pytest.mark.parametrize("how", ["expired", "dead-pid", "damaged"])
def test_a_stale_lease_is_taken_over(destination: Destination, how: str) -> None:
    if how == "expired":
        plant_lease(destination, expires_at=time.time() - 1)
        reason = "its lease expired"
    elif how == "dead-pid":
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        plant_lease(destination, host=socket.gethostname(), pid=gone.pid)
        reason = f"its process {gone.pid} is no longer running on this host"
    else:
        destination.replace_if(lease_key(ASSET, DAY), b"{half a lea", None)
        reason = "it is damaged"
    said: list[str] = []
    with PartitionLease(destination, ASSET, DAY, "mine", wait_seconds=0, log=said.append):
        holder = LeaseHolder.from_json(everything(destination)[lease_key(ASSET, DAY)])
        assert holder is not None
        assert holder.run_id == "mine"
    assert len(said) == 1
    assert said[0].endswith(reason)
    assert said[0].startswith(f"took over the lease of {ASSET} {DAY} from ")
    assert lease_key(ASSET, DAY) not in everything(destination)  # released


def test_the_manifest_is_replaced_only_over_the_version_read(destination: Destination) -> None:
    key = manifest_key(ASSET, DAY)
    first = destination.replace_if(key, b"one", None)
    assert first is not None
    assert destination.replace_if(key, b"two", None) is None  # it exists now
    second = destination.replace_if(key, b"two", first)
    assert second is not None
    assert destination.replace_if(key, b"three", first) is None  # stale version
    assert destination.read_bytes(key) == b"two"
    assert not destination.delete_if(key, first)
    assert destination.delete_if(key, second)
    assert destination.read_bytes(key) is None


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from export_assets.lib.exports.destinations import LocalDestination
    from export_assets.lib.exports.lease import PartitionLease
    root, go, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    while not go.exists():
        time.sleep(0.001)
    lease = PartitionLease(
        LocalDestination(root), "raced", "2026-11-20", sys.argv[4], wait_seconds=0
    )
    other = lease.try_acquire()
    print("busy" if other else "won", flush=True)
    if mode == "hold" and other is None:
        time.sleep(600)
    lease.release()
    """
)


@pytest.mark.slow  # four interpreters importing dagster: ~10-40 s on two busy cores
def test_processes_taking_one_lease_at_once_get_it_once(tmp_path: Path) -> None:
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(tmp_path / "exports"), str(go), "hold", f"p{n}"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for n in range(4)
    ]
    try:
        go.touch()
        answers = [process.stdout.readline().strip() for process in processes]  # type: ignore[union-attr]
        assert sorted(answers) == ["busy", "busy", "busy", "won"]
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_a_holder_killed_with_sigkill_frees_the_partition_at_once(tmp_path: Path) -> None:
    go = tmp_path / "go"
    go.touch()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path / "exports"), str(go), "hold", "killed"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "won"
        destination = LocalDestination(tmp_path / "exports")
        with pytest.raises(PartitionBusyError, match="run killed"):
            PartitionLease(destination, ASSET, DAY, "next", wait_seconds=0).acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        said: list[str] = []
        with PartitionLease(destination, ASSET, DAY, "next", wait_seconds=0, log=said.append):
            pass
        assert f"its process {holder.pid} is no longer running on this host" in said[0]
    finally:
        holder.kill()
        holder.wait()


def test_the_lease_is_a_dot_file_that_readers_do_not_see(tmp_path: Path) -> None:
    destination = LocalDestination(tmp_path / "exports")
    with PartitionLease(destination, ASSET, DAY, "mine"):
        lease = tmp_path / "exports" / ASSET / f".dt={DAY}.lease"
        assert json.loads(lease.read_bytes())["run_id"] == "mine"
        assert destination.list_folders(ASSET) == []  # not a partition
        assert not list((tmp_path / "exports").glob("*/*/*"))
    assert not (tmp_path / "exports" / ASSET).exists()  # nothing left by a lease alone
