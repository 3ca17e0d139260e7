"""Read-only access to ProxyWhirl's ``proxies.db``: schema check, snapshots, Arrow batches."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import pyarrow as pa

from export_assets.source.schema import REQUIRED_COLUMNS
from export_assets.source.status import replay
from export_assets.source.timestamps import TIMESTAMP_UTC, TimestampError, day_text, parse_utc_text


class SourceError(Exception):
    """A ProxyWhirl file is missing, unreadable, or not what the exporter expects."""


POOL_SCHEMA = pa.schema(
    [
        pa.field("url", pa.string(), nullable=False),
        pa.field("protocol", pa.string(), nullable=False),
        pa.field("host", pa.string(), nullable=False),
        pa.field("port", pa.int32(), nullable=False),
        pa.field("country_code", pa.string()),
        pa.field("country_name", pa.string()),
        pa.field("region", pa.string()),
        pa.field("city", pa.string()),
        pa.field("latitude", pa.float64()),
        pa.field("longitude", pa.float64()),
        pa.field("asn", pa.int64()),
        pa.field("isp_name", pa.string()),
        pa.field("is_residential", pa.bool_(), nullable=False),
        pa.field("is_datacenter", pa.bool_(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_url", pa.string()),
        pa.field("discovered_at", TIMESTAMP_UTC, nullable=False),
        pa.field("health_status", pa.string(), nullable=False),
        pa.field("last_check_at", TIMESTAMP_UTC),
        pa.field("last_success_at", TIMESTAMP_UTC),
        pa.field("last_failure_at", TIMESTAMP_UTC),
        pa.field("consecutive_successes", pa.int64(), nullable=False),
        pa.field("consecutive_failures", pa.int64(), nullable=False),
        pa.field("total_checks", pa.int64(), nullable=False),
        pa.field("total_successes", pa.int64(), nullable=False),
        pa.field("success_rate", pa.float64()),
        pa.field("checks_7d", pa.int64(), nullable=False),
        pa.field("success_rate_7d", pa.float64()),
        pa.field("avg_response_time_ms", pa.float64()),
    ]
)
"""The pool as of a moment: identity fields (never credentials) and rebuilt health."""

_IDENTITY_COLUMNS = (
    "url", "protocol", "host", "port", "country_code", "country_name", "region", "city",
    "latitude", "longitude", "asn", "isp_name", "is_residential", "is_datacenter",
    "source", "source_url", "discovered_at",
)  # fmt: skip

_VALIDATIONS_UP_TO = (
    "SELECT proxy_url, validated_at, is_valid, response_time_ms FROM validation_results"
    " WHERE validated_at < ? ORDER BY proxy_url, validated_at, id"
)

DEFAULT_BATCH_ROWS = 65_536

_DAY_FILTERED = (("proxy_identities", "discovered_at"), ("validation_results", "validated_at"))


def connect_read_only(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """Open ``path`` read-only (``mode=ro``) with a busy timeout; never creates a file."""
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise SourceError(
            f"ProxyWhirl database {path} {what}: set PROXYWHIRL_DB to ProxyWhirl's proxies.db "
            "(or write a sample with `export-assets sample-data --out DIR`)"
        )
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        connection = sqlite3.connect(
            uri, uri=True, timeout=busy_timeout_ms / 1000, isolation_level=None,
            check_same_thread=False,
        )  # fmt: skip
    except sqlite3.Error as exc:
        raise SourceError(f"cannot open ProxyWhirl database {path} read-only: {exc}") from exc
    return connection


class SourceSnapshot:
    """One read transaction on ``proxies.db``: every read through it sees the same data.

    Open it, read, close it (or use it as a context manager). The schema is verified
    inside the transaction, so what is checked is what is read.
    """

    def __init__(self, path: Path, *, busy_timeout_ms: int, batch_rows: int) -> None:
        self.path = path
        self.batch_rows = batch_rows
        self._connection = connect_read_only(path, busy_timeout_ms)
        try:
            self._connection.execute("BEGIN")
            self._verify_schema()
            self._verify_timestamps()
        except BaseException:
            self._connection.close()
            raise

    def __enter__(self) -> SourceSnapshot:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()

    def close(self) -> None:
        """End the read transaction and close the connection (idempotent)."""
        try:
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # closing releases the read lock anyway
        finally:
            self._connection.close()

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run a read inside the snapshot; SQLite errors become SourceErrors that say why."""
        try:
            return self._connection.execute(sql, parameters)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise SourceError(
                    f"ProxyWhirl database {self.path} stayed locked by a writer past the busy "
                    f"timeout ({exc}); retry, or raise busy_timeout_ms"
                ) from exc
            raise SourceError(f"reading ProxyWhirl database {self.path} failed: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise SourceError(
                f"{self.path} is not a readable SQLite database ({exc}): PROXYWHIRL_DB must "
                "point at ProxyWhirl's proxies.db"
            ) from exc

    def _verify_schema(self) -> None:
        for table, needed in REQUIRED_COLUMNS.items():
            present = {row[1] for row in self.execute(f"PRAGMA table_info({table})")}
            if not present:
                raise SourceError(
                    f"{self.path} has no table {table}: is PROXYWHIRL_DB a ProxyWhirl database?"
                )
            missing = [column for column in needed if column not in present]
            if missing:
                raise SourceError(
                    f"{self.path}: table {table} has no column {', '.join(missing)}; the exporter "
                    f"reads ProxyWhirl 0.3's schema ({', '.join(needed)}): is this database "
                    "from another ProxyWhirl version?"
                )

    def _verify_timestamps(self) -> None:
        # Day filters compare DATETIME text; a value that does not start with a digit (or is
        # not text at all: numbers sort first) would fall outside every day unseen. '0-' and
        # ':' stay text under the column's NUMERIC affinity; the range uses the index.
        for table, column in _DAY_FILTERED:
            row = self.execute(
                f"SELECT {column} FROM {table} WHERE {column} < '0-' OR {column} >= ':' LIMIT 1"
            ).fetchone()
            if row is not None:
                raise SourceError(
                    f"{self.path}: {table}.{column} holds {str(row[0])[:60]!r}, which is not a "
                    "timestamp; ProxyWhirl writes 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC)"
                )

    def validation_watermark(self, before: date) -> int | None:
        """Highest validation id recorded before midnight (UTC) opening ``before``."""
        row = self.execute(
            "SELECT max(id) FROM validation_results WHERE validated_at < ?", (day_text(before),)
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def proxy_pool(self, as_of: date) -> Iterator[pa.RecordBatch]:
        """The pool as it stood at midnight (UTC) opening ``as_of``, in ``url`` order.

        Proxies discovered before that moment, with health rebuilt by replaying their
        ``validation_results`` before it through ProxyWhirl's rules. Seed checks that
        ProxyWhirl counts in ``proxy_statuses`` without a history row are not counted:
        history is the only record of the past.
        """
        end = day_text(as_of)
        window_start = day_text(as_of - timedelta(days=7))
        identities = self.execute(
            f"SELECT {', '.join(_IDENTITY_COLUMNS)} FROM proxy_identities"
            " WHERE discovered_at < ? ORDER BY url",
            (end,),
        )
        # A second cursor on the same connection reads inside the same transaction.
        histories = groupby(_rows(self.execute(_VALIDATIONS_UP_TO, (end,))), key=itemgetter(0))
        current = next(histories, None)
        while rows := identities.fetchmany(self.batch_rows):
            pool: list[tuple[Any, ...]] = []
            for identity in rows:
                url = identity[0]
                while current is not None and current[0] < url:  # history of a deleted proxy
                    current = next(histories, None)
                if current is not None and current[0] == url:
                    pool.append((*identity, *replay((c[1:] for c in current[1]), window_start)))
                    current = next(histories, None)
                else:
                    pool.append((*identity, *replay((), window_start)))
            yield rows_to_batch(pool, POOL_SCHEMA, table="proxy_identities")


def _rows(cursor: sqlite3.Cursor, size: int = DEFAULT_BATCH_ROWS) -> Iterator[tuple[Any, ...]]:
    while chunk := cursor.fetchmany(size):
        yield from chunk


def rows_to_batch(rows: list[tuple[Any, ...]], schema: pa.Schema, *, table: str) -> pa.RecordBatch:
    """Turn SQLite rows into a batch of ``schema``; DATETIME text and 0/1 are converted."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = []
    for field, values in zip(schema, columns, strict=True):
        name = f"{table}.{field.name}"
        try:
            if field.type == TIMESTAMP_UTC:
                arrays.append(parse_utc_text(pa.array(values, pa.string()), name))
            elif field.type == pa.bool_():
                arrays.append(pa.array(values, pa.int8()).cast(pa.bool_()))
            else:
                arrays.append(pa.array(values, field.type))
        except TimestampError as exc:
            raise SourceError(str(exc)) from exc
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise SourceError(
                f"{name} holds a value that is not {field.type} ({exc}): is this a ProxyWhirl "
                "database?"
            ) from exc
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
