"""One writer per partition: a lease object next to the partition, taken by compare-and-swap.

The lease is ``{asset}/.dt={day}.lease`` (a dot-file beside the ``dt=`` folders, so globs of
data files and Hive readers never see it). It holds the run id, host, pid and expiry of its
holder. It is created exclusively (``If-None-Match: *`` on S3; a folder lock and a check on
disk), renewed by a heartbeat while the holder works, and deleted by compare-and-swap when
the holder is done. A lease whose holder is gone is taken over, also by compare-and-swap,
so two takers never both win: one that expired (its holder stopped renewing: killed, hung
or cut off), or one whose pid is dead on this host (a kill -9 frees the partition at once).

A second run of a busy partition waits for the lease up to a bounded time, then fails with
``PartitionBusyError`` naming the holder; that error is a ``TimeoutError``, so the asset's
retry policy runs it again later. Waiting rather than failing at once is deliberate: the
overlapping runs are a schedule, the new-validations sensor and UI clicks, and the later one
usually carries newer data; it should publish after the first, not be dropped.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import TracebackType

from export_assets.lib.exports.destinations import Destination
from export_assets.lib.exports.manifest import (
    PARTITION_FOLDER_PREFIX,
    check_asset_name,
    check_partition,
)

LEASE_SUFFIX = ".lease"
DEFAULT_LEASE_SECONDS = 120.0  # a holder renews every third of it
DEFAULT_WAIT_SECONDS = 120.0
POLL_SECONDS = 0.2


class PartitionBusyError(TimeoutError):
    """Another run holds the partition's lease; retry when it is done."""


class LeaseLostError(TimeoutError):
    """The lease was taken over while its holder worked (it stalled past the expiry)."""


def lease_key(asset: str, partition: str) -> str:
    """``{asset}/.dt={partition}.lease``."""
    check_asset_name(asset)
    check_partition(partition)
    return f"{asset}/.{PARTITION_FOLDER_PREFIX}{partition}{LEASE_SUFFIX}"


def partition_of_lease(name: str) -> str | None:
    """The partition a lease file name is for, or None when ``name`` is not a lease."""
    prefix = f".{PARTITION_FOLDER_PREFIX}"
    if not (name.startswith(prefix) and name.endswith(LEASE_SUFFIX)):
        return None
    return name.removeprefix(prefix).removesuffix(LEASE_SUFFIX)


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a lease, until when."""

    run_id: str
    host: str
    pid: int
    pid_started: str | None  # the process's start time, so a reused pid is not mistaken
    token: str  # unique per acquisition
    acquired_at: float
    expires_at: float

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> LeaseHolder | None:
        """The holder, or None when ``data`` is not a lease (damaged: treated as stale)."""
        try:
            raw = json.loads(data)
            return cls(
                run_id=str(raw["run_id"]), host=str(raw["host"]), pid=int(raw["pid"]),
                pid_started=None if raw.get("pid_started") is None else str(raw["pid_started"]),
                token=str(raw["token"]), acquired_at=float(raw["acquired_at"]),
                expires_at=float(raw["expires_at"]),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.acquired_at, UTC).isoformat(timespec="seconds")
        until = datetime.fromtimestamp(self.expires_at, UTC).isoformat(timespec="seconds")
        return (
            f"run {self.run_id} (pid {self.pid} on {self.host}, since {since}, lease "
            f"expires {until} unless renewed)"
        )

    def stale_because(self, now: float) -> str | None:
        """Why the holder is gone (expired, dead pid on this host), or None if it may live."""
        if now >= self.expires_at:
            return "its lease expired"
        if self.host == socket.gethostname() and not _process_alive(self.pid, self.pid_started):
            return f"its process {self.pid} is no longer running on this host"
        return None


def _process_started(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return None


def _process_alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return started is None or _process_started(pid) in (None, started)


class PartitionLease:
    """Hold ``{asset}/dt={partition}`` for one run: ``with PartitionLease(...) as lease:``."""

    def __init__(
        self,
        destination: Destination,
        asset: str,
        partition: str,
        run_id: str,
        *,
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.destination = destination
        self.asset = asset
        self.partition = partition
        self.key = lease_key(asset, partition)
        self.run_id = run_id
        self.wait_seconds = wait_seconds
        self.lease_seconds = lease_seconds
        self.log = log
        self._version: str | None = None
        self._holder: LeaseHolder | None = None
        self._lost: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def __enter__(self) -> PartitionLease:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def _new_holder(self) -> LeaseHolder:
        now = time.time()
        return LeaseHolder(
            run_id=self.run_id, host=socket.gethostname(), pid=os.getpid(),
            pid_started=_process_started(os.getpid()), token=uuid.uuid4().hex,
            acquired_at=now, expires_at=now + self.lease_seconds,
        )

    def try_acquire(self) -> LeaseHolder | None:
        """Take the lease if it is free or stale; else the live holder (nothing is waited)."""
        holder = self._new_holder()
        version = self.destination.replace_if(self.key, holder.to_json(), None)
        if version is None:
            current = self.destination.read_versioned(self.key)
            if current is None:
                return self.try_acquire()  # released meanwhile
            data, found = current
            other = LeaseHolder.from_json(data)
            reason = "it is damaged" if other is None else other.stale_because(time.time())
            if reason is None:
                assert other is not None
                return other
            version = self.destination.replace_if(self.key, holder.to_json(), found)
            if version is None:
                return self.try_acquire()  # someone else took it over first
            if self.log is not None:
                who = "a damaged lease" if other is None else other.describe()
                self.log(
                    f"took over the lease of {self.asset} {self.partition} from {who}: {reason}"
                )
        self._version, self._holder, self._lost = version, holder, None
        self._stop.clear()
        self._heartbeat = threading.Thread(
            target=self._renew_until_released, name=f"lease {self.key}", daemon=True
        )
        self._heartbeat.start()
        return None

    def acquire(self) -> None:
        """Take the lease, waiting up to ``wait_seconds`` for a live holder to finish."""
        deadline = time.monotonic() + self.wait_seconds
        announced = False
        while True:
            other = self.try_acquire()
            if other is None:
                return
            if time.monotonic() >= deadline:
                raise PartitionBusyError(
                    f"{self.asset} {self.partition} is being exported by {other.describe()}; "
                    f"waited {self.wait_seconds:g} s for it. One run writes a partition at a "
                    "time: this run is retried by its retry policy, or run it again when "
                    "the other has finished"
                )
            if not announced and self.log is not None:
                self.log(
                    f"{self.asset} {self.partition} is being exported by {other.describe()}: "
                    f"waiting up to {self.wait_seconds:g} s for it to finish"
                )
                announced = True
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    def _renew_until_released(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            with self._lock:
                if self._holder is None or self._version is None or self._lost:
                    return
                renewed = LeaseHolder(
                    **{**asdict(self._holder), "expires_at": time.time() + self.lease_seconds}
                )
                try:
                    version = self.destination.replace_if(
                        self.key, renewed.to_json(), self._version
                    )
                except Exception as exc:  # a transient failure: the next beat tries again
                    if self.log is not None:
                        self.log(f"could not renew the lease {self.key}: {exc}")
                    continue
                if version is None:
                    self._lost = "another run took the lease over (this run stalled past it)"
                    return
                self._holder, self._version = renewed, version

    def ensure_held(self) -> None:
        """Raise ``LeaseLostError`` unless this run still holds the lease (checked now)."""
        with self._lock:
            if self._lost is None:
                current = self.destination.read_versioned(self.key)
                if current is None or current[1] != self._version:
                    self._lost = "the lease was taken over or removed while this run worked"
            if self._lost is not None:
                raise LeaseLostError(
                    f"{self.asset} {self.partition}: {self._lost}; nothing more is published "
                    "by this run. Run it again"
                )

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still this run's."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
        with self._lock:
            version, self._version, self._holder = self._version, None, None
        if version is None:
            return
        try:
            self.destination.delete_if(self.key, version)
            self.destination.prune(self.asset)  # a first export that failed leaves nothing
        except Exception as exc:
            # Never hide the run's own outcome: the lease expires by itself.
            if self.log is not None:
                self.log(
                    f"could not remove the lease {self.key} ({exc}); it expires in "
                    f"{self.lease_seconds:g} s (on this host, as soon as this process has ended)"
                )


def _stale_lease(destination: Destination, key: str) -> tuple[str, str] | None:
    current = destination.read_versioned(key)
    if current is None:
        return None
    data, version = current
    holder = LeaseHolder.from_json(data)
    reason = "it is damaged" if holder is None else holder.stale_because(time.time())
    if reason is None:
        return None
    who = "a damaged lease" if holder is None else holder.describe()
    return f"{key} ({who}): {reason}", version


def describe_stale_lease(destination: Destination, key: str) -> str | None:
    """What ``clear_stale_lease`` would remove, or None."""
    stale = _stale_lease(destination, key)
    return None if stale is None else stale[0]


def clear_stale_lease(destination: Destination, key: str) -> str | None:
    """Delete the lease ``key`` if its holder is gone; a description of it, or None."""
    stale = _stale_lease(destination, key)
    if stale is None or not destination.delete_if(key, stale[1]):
        return None
    return stale[0]
