"""``restore pool --history``: ``validation_events`` partitions back into ``validation_results``.

ProxyWhirl's history is append-only with a monotonic id; the export keeps every row's id,
so the restored table is the original row for row (ids included), and a restored
deployment re-exports the same ``validation_events`` and, replayed, the same ``proxy_list``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from export_assets.lib.exports.manifest import MANIFEST_NAME, PARTITION_FOLDER_PREFIX
from export_assets.lib.restore.tables import TABLE_FORMATS, read_export_table
from export_assets.lib.restore.verify import RestoreError, VerifiedExport, verify_export
from export_assets.lib.source.schema import DATETIME_TEXT_FORMAT, REQUIRED_COLUMNS

EVENTS_ASSET = "validation_events"
HISTORY_COLUMNS = REQUIRED_COLUMNS["validation_results"]
_INSERT_BATCH = 5_000


@dataclass(frozen=True)
class HistoryRange:
    """The days (UTC, inclusive) of ``validation_events`` to replay."""

    start: date
    end: date

    @classmethod
    def parse(cls, text: str) -> HistoryRange:
        """``START..END`` or one day ``DAY`` (``YYYY-MM-DD``)."""
        first, dots, last = text.strip().partition("..")
        try:
            start = date.fromisoformat(first.strip())
            end = date.fromisoformat(last.strip()) if dots else start
        except ValueError:
            raise RestoreError(
                f"--history {text!r} is not a range of days: write START..END, e.g. "
                "2026-11-01..2026-11-20 (or one day, 2026-11-20)"
            ) from None
        if end < start:
            raise RestoreError(
                f"--history {text!r} ends before it starts: write START..END with START <= END"
            )
        return cls(start, end)

    def days(self) -> list[date]:
        """Every day of the range, in order."""
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    def __str__(self) -> str:
        return f"{self.start}..{self.end}"


def events_root_beside(pool_export: Path) -> Path:
    """Where ``validation_events`` lies beside a ``proxy_list`` export: the same destination."""
    folder = pool_export if pool_export.is_dir() else pool_export.parent
    return folder.parent.parent / EVENTS_ASSET


def verify_history(root: Path, days: HistoryRange, pool_partition: str) -> list[VerifiedExport]:
    """Find and prove every partition of the range (manifest, sha256, chain), or say which
    is missing; nothing is parsed yet."""
    if days.end > date.fromisoformat(pool_partition):
        raise RestoreError(
            f"--history {days} goes past the pool's day {pool_partition}: the restored "
            f"statuses are those of the end of {pool_partition}, and later checks would "
            f"contradict them; end the range at {pool_partition} (or restore a later pool)"
        )
    if not root.is_dir():
        raise RestoreError(
            f"{root} does not exist: --history reads the validation_events partitions from "
            "there (the destination of the proxy_list export); give their folder with --events"
        )
    exports = []
    for day in days.days():
        folder = root / f"{PARTITION_FOLDER_PREFIX}{day.isoformat()}"
        if not (folder / MANIFEST_NAME).is_file():
            raise RestoreError(
                f"validation_events has no partition for {day} in {root} (no {folder.name}/"
                f"{MANIFEST_NAME}): export that day (backfill validation_events), or narrow "
                f"--history {days}"
            )
        export = verify_export(folder, EVENTS_ASSET, TABLE_FORMATS)
        missing = [name for name in HISTORY_COLUMNS if name not in _names(export)]
        if missing:
            raise RestoreError(
                f"{folder} lacks the column(s) {', '.join(missing)} of ProxyWhirl's "
                "validation_results: export validation_events with every field"
            )
        exports.append(export)
    return exports


def _names(export: VerifiedExport) -> list[str]:
    return [str(column.get("name")) for column in export.manifest.columns]


def history_rows(export: VerifiedExport) -> Iterator[list[tuple[Any, ...]]]:
    """One partition's results as ``validation_results`` rows, in batches."""
    table = read_export_table(export).table.select(list(HISTORY_COLUMNS))
    for batch in table.to_batches(_INSERT_BATCH):
        yield [_db_row(row) for row in zip(*_columns(batch), strict=True)]


def _columns(batch: pa.RecordBatch) -> list[list[Any]]:
    return [column.to_pylist() for column in batch.columns]


def _db_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    event_id, url, validated_at, is_valid, latency, error_type, message = row
    assert isinstance(validated_at, datetime)
    moment = validated_at.replace(tzinfo=None).strftime(DATETIME_TEXT_FORMAT)
    return (event_id, url, moment, int(bool(is_valid)), latency, error_type, message)


@dataclass
class HistoryCount:
    """What replaying the history did (or, dry, would do)."""

    partitions: int = 0
    added: int = 0
    present: int = 0


def replay_history(
    connection: sqlite3.Connection,
    exports: list[VerifiedExport],
    *,
    dry_run: bool,
    fresh: bool = False,
) -> HistoryCount:
    """Insert every result of ``exports`` with its own id, inside the caller's transaction.

    A row whose id is already there with the same values is counted as present; with
    other values, ``RestoreError`` (the caller rolls back: nothing is changed). ``fresh``:
    the table started empty (an id twice is then SQLite's IntegrityError).
    """
    count = HistoryCount(partitions=len(exports))
    columns = ", ".join(HISTORY_COLUMNS)
    marks = ", ".join("?" for _ in HISTORY_COLUMNS)
    for export in exports:
        for rows in history_rows(export):
            existing = {} if fresh else _existing(connection, [row[0] for row in rows], columns)
            new = []
            for row in rows:
                there = existing.get(row[0])
                if there is None:
                    new.append(row)
                elif _same(there, row):
                    count.present += 1
                else:
                    raise RestoreError(
                        f"validation_results already holds id {row[0]} with other values "
                        f"(for {there[1]} at {there[2]}) than {export.data_file} (for {row[1]} "
                        f"at {row[2]}): this database has another history; restore into a "
                        "new database, or without --history"
                    )
            count.added += len(new)
            if new and not dry_run:
                connection.executemany(
                    f"INSERT INTO validation_results ({columns}) VALUES ({marks})", new
                )
    return count


def _existing(
    connection: sqlite3.Connection, ids: list[int], columns: str
) -> dict[int, tuple[Any, ...]]:
    found: dict[int, tuple[Any, ...]] = {}
    for start in range(0, len(ids), 500):  # SQLite's variable limit
        chunk = ids[start : start + 500]
        rows = connection.execute(
            f"SELECT {columns} FROM validation_results WHERE id IN "
            f"({', '.join('?' for _ in chunk)})",
            chunk,
        )
        found.update({row[0]: tuple(row) for row in rows})
    return found


def _same(there: tuple[Any, ...], row: tuple[Any, ...]) -> bool:
    # DATETIME text may be written without a fraction by other writers: compare instants.
    def moment(text: Any) -> Any:
        try:
            return datetime.fromisoformat(str(text).replace("Z", "+00:00")).replace(tzinfo=None)
        except ValueError:
            return text

    return (
        there[1] == row[1]
        and moment(there[2]) == moment(row[2])
        and bool(there[3]) == bool(row[3])
        and there[4:] == row[4:]
    )
