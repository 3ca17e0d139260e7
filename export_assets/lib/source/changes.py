"""What changed in the pool during one UTC day: the diff of two rebuilt pools, streamed.

Partition D compares the pool as of the end of D-1 (``proxy_pool(D)``) with the pool as of
the end of D (``proxy_pool(D + 1)``), both read from one snapshot. Both are in ``url``
order, so they are merge-joined in one pass without holding either in memory:

- ``added``: in the pool at the end of D, not at the end of D-1 (discovered during D).
  ``status_from`` is null, ``status_to`` is its status at the end of D.
- ``status_changed``: in both, with another ``health_status``; the row is the proxy as of
  the end of D and carries ``status_from`` (end of D-1) and ``status_to`` (end of D).
- ``removed``: ProxyWhirl deletes a proxy's identity row and keeps no record of the
  deletion, so a deleted proxy vanishes from every rebuilt pool. What survives is its
  validation history (``validation_results.proxy_url`` is not a foreign key that SQLite
  enforces). The rule: a proxy with validation history but no identity row is reported
  ``removed`` in the partition of the day after its last validation, the first day nobody
  saw it. Its row holds what can be derived: the url, protocol/host/port parsed from it,
  and health rebuilt from its history up to the end of D-1 (``status_from``); every other
  identity field is null, and ``status_to`` is null. The day of the last validation is
  its DATETIME text's date, whatever form the text takes. A proxy in the pool at the end of
  D-1 but not at the end of D is reported ``removed`` too, with its fields as of the end of
  D-1 (append-only history never produces one, but the merge does not drop it).

  Limits of the rule: the removal is dated by the last validation, not by the deletion,
  which ProxyWhirl does not record. If the partition of the day after the last validation
  was exported before the deletion happened, the removal shows only when that partition
  is exported again. A proxy deleted without ever having been checked leaves no trace.
  Its ``discovered_at`` went with its identity, so its health replays every check of its
  history (ProxyWhirl did not count those made before its add). A url that was checked
  but never added (ProxyWhirl records the check anyway) looks the same and is reported
  ``removed`` too. A proxy deleted and added again is one proxy discovered at the re-add:
  the pools of the days before do not hold it, so it shows as ``added`` that day.

Both pools count checks as ProxyWhirl does (``status``: checks before the add not
counted, seed checks counted), so a status change is one the library's own status made.
"""

from __future__ import annotations

import tempfile
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from enum import StrEnum
from typing import IO, Any, Literal, get_args
from urllib.parse import urlsplit

import pyarrow as pa

from export_assets.lib.source.arrays import arrow_array
from export_assets.lib.source.database import POOL_SCHEMA, SourceSnapshot, rows_to_batch
from export_assets.lib.source.status import replay
from export_assets.lib.source.timestamps import day_text

ChangeKind = Literal["added", "removed", "status_changed"]
CHANGE_KINDS: tuple[ChangeKind, ...] = get_args(ChangeKind)
"""Every kind of change, in the order an export lists them."""

ADDED: ChangeKind = "added"
REMOVED: ChangeKind = "removed"
STATUS_CHANGED: ChangeKind = "status_changed"


class ChangeKindChoice(StrEnum):
    """``ChangeKind`` as an enum: Dagster's config schema takes a list of enums, not a list
    of Literals, and an enum shows as a choice in the launchpad."""

    added = "added"
    removed = "removed"
    status_changed = "status_changed"


# Known for every change, a removed proxy's included: its url and the health rebuilt from
# its history. Identity fields of a removed proxy are gone with its identity row.
_ALWAYS_KNOWN = frozenset(
    {
        "url",
        "health_status",
        "consecutive_successes",
        "consecutive_failures",
        "total_checks",
        "total_successes",
        "checks_7d",
    }
)

CHANGES_SCHEMA = pa.schema(
    [
        pa.field("change", pa.string(), nullable=False),
        pa.field("status_from", pa.string()),
        pa.field("status_to", pa.string()),
        *(
            pa.field(
                field.name, field.type, nullable=field.nullable or field.name not in _ALWAYS_KNOWN
            )
            for field in POOL_SCHEMA
        ),
    ]
)
"""One change of the pool during a day: its kind, the status before and after (null where
the proxy was not in the pool), then the proxy's ``POOL_SCHEMA`` fields as of the end of the
day (as of the end of the day before for a removed proxy)."""


def pool_changes(
    snapshot: SourceSnapshot, day: date, kinds: Iterable[ChangeKind] = CHANGE_KINDS
) -> PoolChanges:
    """The changes of the pool during ``day``, read from ``snapshot`` in one pass.

    Every kind is counted; only ``kinds`` are kept, in temporary files (memory stays
    bounded by a batch), so the snapshot can be closed as soon as this returns.
    """
    changes = PoolChanges(kinds)
    try:
        before = snapshot.proxy_pool(day)  # the end of day - 1
        after = snapshot.proxy_pool(day + timedelta(days=1))  # the end of day
        for kind, batch in diff_pools(before, after):
            changes.add(kind, batch)
        for batch in removed_from_history(snapshot, day):
            changes.add(REMOVED, batch, from_history=True)
        changes.finish()
    except BaseException:
        changes.close()
        raise
    return changes


def diff_pools(
    before: Iterator[pa.RecordBatch], after: Iterator[pa.RecordBatch]
) -> Iterator[tuple[ChangeKind, pa.RecordBatch]]:
    """Merge-join two ``POOL_SCHEMA`` pools in ``url`` order into ``CHANGES_SCHEMA`` batches.

    Yields each kind's batches in ``url`` order (kinds interleave). Holds one batch of each
    pool at a time.
    """
    old, new = _PoolWalk(before), _PoolWalk(after)
    while not (old.done and new.done):
        if new.done or (not old.done and old.url < new.url):
            old.mark(REMOVED, status_from=old.status)
            yield from old.step()
        elif old.done or new.url < old.url:
            new.mark(ADDED)
            yield from new.step()
        else:
            if old.status != new.status:
                new.mark(STATUS_CHANGED, status_from=old.status)
            yield from old.step()
            yield from new.step()


def removed_from_history(snapshot: SourceSnapshot, day: date) -> Iterator[pa.RecordBatch]:
    """Proxies whose identity is gone and whose last validation was the day before ``day``.

    In ``url`` order, as ``CHANGES_SCHEMA`` batches of kind ``removed``: url, protocol, host
    and port parsed from the url, health rebuilt from the whole history (all of it before
    ``day``); the other identity fields are null.
    """
    window_start = day_text(day - timedelta(days=7))
    rows: list[tuple[Any, ...]] = []
    for url, last_check in orphans(snapshot):
        if not day_text(day - timedelta(days=1)) <= last_check < day_text(day):
            continue
        # Its identity is gone with its discovered_at: which of its checks ProxyWhirl
        # counted is unknown, so all of them are replayed.
        for _, checks in snapshot.histories(url=url, counted=False):
            health = replay(checks, window_start)
            rows.append((REMOVED, health[0], None, url, *_url_parts(url), *(None,) * 13, *health))
        if len(rows) >= snapshot.batch_rows:
            yield rows_to_batch(rows, CHANGES_SCHEMA, table="validation_results")
            rows = []
    if rows:
        yield rows_to_batch(rows, CHANGES_SCHEMA, table="validation_results")


def orphans(snapshot: SourceSnapshot) -> Iterator[tuple[Any, Any]]:
    """Each proxy with history (up to the watermark) but no identity row, in url order,
    with the ``validated_at`` of its last check.

    The history's urls come from the ``proxy_url`` index a seek each, and only an orphan's
    own rows are read, each in a short statement of its own.
    """
    known = set(snapshot.identities.column("url").to_pylist())
    for url in snapshot.history_urls():
        if url in known:
            continue
        row = snapshot.execute(
            "SELECT max(validated_at) FROM validation_results WHERE proxy_url = ? AND +id <= ?",
            (url, snapshot.id_limit),
        ).fetchone()
        if row is not None and row[0] is not None:  # None: its checks are all newer
            yield url, row[0]


class PoolChanges:
    """One day's changes, kept by kind in temporary files until read back.

    ``counts`` has every kind, kept or not. :meth:`batches` reads the kept ones back, by
    kind (``CHANGE_KINDS`` order) then by ``url``. :meth:`close` deletes the files.
    """

    def __init__(self, kinds: Iterable[ChangeKind]) -> None:
        self.kinds = tuple(kind for kind in CHANGE_KINDS if kind in set(kinds))
        self.counts: dict[ChangeKind, int] = dict.fromkeys(CHANGE_KINDS, 0)
        self._spills: dict[tuple[ChangeKind, bool], _Spill] = {}

    def add(self, kind: ChangeKind, batch: pa.RecordBatch, *, from_history: bool = False) -> None:
        """Count ``batch`` and keep it if its kind was asked for (batches arrive url-ordered)."""
        self.counts[kind] += batch.num_rows
        if kind in self.kinds and batch.num_rows:
            spill = self._spills.get((kind, from_history))
            if spill is None:
                spill = self._spills[(kind, from_history)] = _Spill()
            spill.write(batch)

    def finish(self) -> None:
        """Seal the files: no more batches."""
        for spill in self._spills.values():
            spill.finish()

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The kept changes, by kind then url."""
        for kind in self.kinds:
            # Removals come from two url-ordered sources with disjoint urls: the pools, and
            # the history of deleted proxies. Every other kind has one.
            sources = sorted(key for key in self._spills if key[0] == kind)
            yield from _merge_by_url(*(self._spills[key].read() for key in sources))

    def close(self) -> None:
        """Delete the temporary files (idempotent)."""
        spills, self._spills = self._spills, {}
        for spill in spills.values():
            spill.close()


class _Spill:
    """An Arrow IPC stream in an anonymous temporary file (gone when closed or on a crash)."""

    def __init__(self) -> None:
        # Lives as long as the spill: close() ends it.
        self._file: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self._writer: pa.ipc.RecordBatchStreamWriter | None = pa.ipc.new_stream(
            self._file, CHANGES_SCHEMA
        )

    def write(self, batch: pa.RecordBatch) -> None:
        assert self._writer is not None, "write after finish"
        self._writer.write_batch(batch)

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def read(self) -> Iterator[pa.RecordBatch]:
        self.finish()
        self._file.seek(0)
        yield from pa.ipc.open_stream(self._file)

    def close(self) -> None:
        self._file.close()


class _PoolWalk:
    """A position in a url-ordered pool; marks rows as changes, emitted batch by batch."""

    def __init__(self, batches: Iterator[pa.RecordBatch]) -> None:
        self._batches = batches
        self._batch: pa.RecordBatch | None = None
        self._urls: list[str] = []
        self._statuses: list[str] = []
        self._pos = 0
        self._marked: dict[ChangeKind, list[int]] = {}
        self._from: dict[ChangeKind, list[str | None]] = {}
        self._load()

    @property
    def done(self) -> bool:
        return self._batch is None

    @property
    def url(self) -> str:
        return self._urls[self._pos]

    @property
    def status(self) -> str:
        return self._statuses[self._pos]

    def mark(self, kind: ChangeKind, *, status_from: str | None = None) -> None:
        self._marked.setdefault(kind, []).append(self._pos)
        self._from.setdefault(kind, []).append(status_from)

    def step(self) -> Iterator[tuple[ChangeKind, pa.RecordBatch]]:
        """Move to the next row; leaving a batch yields the changes marked in it."""
        self._pos += 1
        if self._pos == len(self._urls):
            yield from self._flush()
            self._load()

    def _load(self) -> None:
        self._batch, self._pos = None, 0
        for batch in self._batches:
            if batch.num_rows:
                self._batch = batch
                self._urls = batch.column("url").to_pylist()
                self._statuses = batch.column("health_status").to_pylist()
                return

    def _flush(self) -> Iterator[tuple[ChangeKind, pa.RecordBatch]]:
        assert self._batch is not None
        for kind, rows in self._marked.items():
            taken = self._batch.take(arrow_array(rows, pa.int64()))
            status = taken.column("health_status")
            status_from = arrow_array(self._from[kind], pa.string())
            status_to = pa.nulls(len(rows), pa.string()) if kind == REMOVED else status
            yield (
                kind,
                pa.RecordBatch.from_arrays(
                    [
                        arrow_array([kind] * len(rows), pa.string()),
                        status_from,
                        status_to,
                        *taken.columns,
                    ],
                    schema=CHANGES_SCHEMA,
                ),
            )
        self._marked, self._from = {}, {}


def _merge_by_url(*streams: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Interleave url-ordered streams of batches into one url-ordered stream (slices)."""
    if len(streams) < 2:
        for stream in streams:
            yield from stream
        return
    first, second, *rest = streams
    merged = _merge_two(first, second)
    yield from _merge_by_url(merged, *rest) if rest else merged


def _merge_two(
    first: Iterator[pa.RecordBatch], second: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    a, b = _Run(first), _Run(second)
    while not (a.done or b.done):
        if a.url <= b.url:  # ties (never seen: the sources are disjoint) keep a first
            yield a.take(bisect_right(a.urls, b.url, lo=a.pos))
        else:
            yield b.take(bisect_left(b.urls, a.url, lo=b.pos))
    for run in (a, b):
        while not run.done:
            yield run.take(len(run.urls))


class _Run:
    """A url-ordered stream of batches, consumed in slices."""

    def __init__(self, batches: Iterator[pa.RecordBatch]) -> None:
        self._batches = batches
        self._batch: pa.RecordBatch | None = None
        self.urls: list[str] = []
        self.pos = 0
        self._load()

    @property
    def done(self) -> bool:
        return self._batch is None

    @property
    def url(self) -> str:
        return self.urls[self.pos]

    def take(self, end: int) -> pa.RecordBatch:
        """Rows from the current position up to ``end`` (exclusive) of the current batch."""
        assert self._batch is not None
        piece = self._batch.slice(self.pos, end - self.pos)
        self.pos = end
        if self.pos == len(self.urls):
            self._load()
        return piece

    def _load(self) -> None:
        self._batch, self.pos = None, 0
        for batch in self._batches:
            if batch.num_rows:
                self._batch = batch
                self.urls = batch.column("url").to_pylist()
                return


def _url_parts(url: str) -> tuple[str | None, str | None, int | None]:
    """protocol, host and port of a proxy url; null where the url does not say."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None, None, None
    return parts.scheme or None, parts.hostname or None, port
