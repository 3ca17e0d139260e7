"""``restore pool``: a verified ``proxy_list`` export back into ProxyWhirl's ``proxies.db``."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

from export_assets.lib.restore.history import (
    HistoryCount,
    HistoryRange,
    events_root_beside,
    replay_history,
    verify_history,
)
from export_assets.lib.restore.tables import LOSSY_FORMATS, TABLE_FORMATS, read_export_table
from export_assets.lib.restore.verify import (
    RestoreError,
    VerifiedExport,
    check_references,
    credential_reader,
    decode_credentials,
    verify_export,
)
from export_assets.lib.security.crypto import (
    CACHE_KEY_ENV,
    CredentialKeyError,
    encrypt_database_credential,
)
from export_assets.lib.source.database import SourceSnapshot
from export_assets.lib.source.schema import DATETIME_TEXT_FORMAT, PROXYWHIRL_DDL, REQUIRED_COLUMNS

OnDuplicate = Literal["skip", "overwrite", "merge"]
POOL_FORMATS = TABLE_FORMATS
DEFAULT_BUSY_TIMEOUT_MS = 5_000
NEW_FILE_MODE = 0o600  # as ProxyWhirl's own files: credentials and history are private

IDENTITY_COLUMNS = REQUIRED_COLUMNS["proxy_identities"]
CREDENTIALS = ("username", "password")
# proxy_identities columns a row cannot do without (NOT NULL in ProxyWhirl's DDL).
NEEDED = (
    "url",
    "protocol",
    "host",
    "port",
    "is_residential",
    "is_datacenter",
    "source",
    "discovered_at",
)
# The status columns ProxyWhirl writes from its checks, all of which the export carries
# (the key, the 7-day rate it leaves NULL and the row's update time aside).
STATUS_COLUMNS = tuple(
    name
    for name in REQUIRED_COLUMNS["proxy_statuses"]
    if name not in {"proxy_url", "success_rate_7d", "updated_at"}
)
# A status row as ProxyWhirl's add_proxy creates it, before any check.
UNCHECKED = {
    "health_status": "unknown",
    "last_success_at": None,
    "last_failure_at": None,
    "last_check_at": None,
    "consecutive_successes": 0,
    "consecutive_failures": 0,
    "total_checks": 0,
    "total_successes": 0,
    "avg_response_time_ms": None,
}
_TIMESTAMPS = frozenset({"discovered_at", "last_success_at", "last_failure_at", "last_check_at"})
_BOOLEANS = frozenset({"is_residential", "is_datacenter"})


@dataclass
class PoolDiff:
    """What a pool restore does (or, dry, would do)."""

    database: Path
    created: bool
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    dry_run: bool = False
    history: HistoryCount | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: what was (or would be) written where."""
        verb = "would restore" if self.dry_run else "restored"
        new = " (a new ProxyWhirl database)" if self.created else ""
        history = ""
        if self.history is not None:
            history = (
                f"; {self.history.added} validation result(s) from {self.history.partitions} "
                f"validation_events partition(s)"
                + (f" ({self.history.present} already there)" if self.history.present else "")
            )
        return (
            f"{verb} into {self.database}{new}: {len(self.added)} added, "
            f"{len(self.updated)} updated, {len(self.skipped)} skipped{history}"
        )

    def lines(self) -> list[str]:
        """The diff, one proxy per line (URLs hold no credentials)."""
        return (
            [f"+ {url}" for url in self.added]
            + [f"~ {url}" for url in self.updated]
            + [f"= {url} (skipped)" for url in self.skipped]
        )


def read_pool(export: VerifiedExport, notes: list[str] | None = None) -> list[dict[str, Any]]:
    """The export's rows as ProxyWhirl's database holds them (text timestamps, 0/1 booleans).

    Any format ``proxy_list`` exports, typed by the manifest's columns; what reading had
    to assume is appended to ``notes``.
    """
    manifest = export.manifest
    names = [str(column.get("name")) for column in manifest.columns]
    missing = [name for name in NEEDED if name not in names]
    if missing:
        raise RestoreError(
            f"{export.folder} lacks the column(s) {', '.join(missing)} that ProxyWhirl's "
            "proxy_identities needs: export proxy_list with every field (no fields selection)"
        )
    read = read_export_table(export)
    if notes is not None:
        if manifest.format in LOSSY_FORMATS:
            notes.append(
                f"{manifest.format} keeps 15-16 significant digits and milliseconds: restored "
                "numbers and timestamps may differ from the original in their last digits; "
                "restore a csv, json, jsonl or parquet export for an exact copy"
            )
        if read.unneutralized:
            notes.append(
                f"{read.unneutralized} text value(s) began with ' before = + - @ tab or CR: "
                "taken as the export's formula neutralisation and restored without the '"
            )
    return [
        {name: _db_value(name, value) for name, value in row.items()}
        for row in read.table.to_pylist()
    ]


def _db_value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _TIMESTAMPS and isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None).strftime(DATETIME_TEXT_FORMAT)
    if name in _BOOLEANS:
        return int(bool(value))
    return value


def restore_pool(
    path: Path,
    database: Path,
    *,
    on_duplicate: OnDuplicate = "skip",
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    history: HistoryRange | str | None = None,
    events: Path | None = None,
) -> PoolDiff:
    """Restore a ``proxy_list`` export into ``database`` in one transaction.

    Each proxy gets its identity, credentials and status as exported, written as
    ProxyWhirl writes them. ``history`` (days, ``START..END``) also replays those
    ``validation_events`` partitions (from ``events``, by default beside the export) into
    ``validation_results``. Everything that can fail is checked first (manifests, sha256,
    chain, schema version, credentials decrypted, the target's schema); a failure leaves
    the target unchanged. A new database is created with mode 0600.
    """
    env = os.environ if environ is None else environ
    export = verify_export(path, "proxy_list", POOL_FORMATS)
    history_exports: list[VerifiedExport] = []
    if history is not None:
        days = history if isinstance(history, HistoryRange) else HistoryRange.parse(history)
        root = Path(events) if events is not None else events_root_beside(Path(path))
        history_exports = verify_history(root, days, export.manifest.partition)
    notes: list[str] = []
    rows = read_pool(export, notes)
    has_credentials = all(name in rows[0] for name in CREDENTIALS) if rows else False
    has_status = all(name in rows[0] for name in STATUS_COLUMNS) if rows else False
    if rows and not has_status:
        notes.append(
            "the export carries no health columns: new proxies get the status ProxyWhirl "
            "gives an added proxy (unknown, no checks)"
        )
    if has_credentials and export.manifest.credential_policy != "redact":
        if export.manifest.credential_policy == "reference":
            check_references([row[name] for row in rows for name in CREDENTIALS], env)
        decode_credentials(rows, CREDENTIALS, credential_reader(export.manifest, env), "url")
        needs_key = any(row[name] is not None for row in rows for name in CREDENTIALS)
        if needs_key:
            cipher = _proxywhirl_key(env)
            for row in rows:
                for name in CREDENTIALS:
                    if row[name] is not None:
                        row[name] = encrypt_database_credential(row[name], cipher)
    else:
        has_credentials = False  # a redacted export: credentials stay as the target has them
    plan = _Plan(rows, has_credentials, has_status, history_exports, dry_run)
    database = Path(database)
    if database.exists():
        diff = _into_existing(database, plan, on_duplicate, busy_timeout_ms)
    else:
        diff = _into_new(database, plan)
    if history_exports and has_status and not dry_run:
        notes += _replay_differs(database, rows, export.manifest.partition)
    diff.notes = notes
    return diff


_REPLAYED = ("url", *STATUS_COLUMNS)


def _replay_differs(database: Path, rows: list[dict[str, Any]], partition: str) -> list[str]:
    """A note when the restored history, replayed as ``proxy_list`` replays it, does not give
    the exported statuses: a re-export of the pool's day would then differ."""
    as_of = date.fromisoformat(partition) + timedelta(days=1)
    replayed: dict[str, tuple[Any, ...]] = {}
    with SourceSnapshot(database) as snapshot:
        for batch in snapshot.proxy_pool(as_of):
            for found in batch.select(list(_REPLAYED)).to_pylist():
                replayed[found["url"]] = tuple(_db_value(n, found[n]) for n in STATUS_COLUMNS)
    differ = [
        row["url"]
        for row in rows
        if replayed.get(row["url"]) != tuple(row[name] for name in STATUS_COLUMNS)
    ]
    if not differ:
        return []
    return [
        f"the restored history, replayed, does not give the exported status of {len(differ)} "
        f"of {len(rows)} proxies (e.g. {differ[0]}): a proxy_list export of {partition} from "
        "this database will differ. --history should start at the first day validation_events "
        "was exported (the statuses written are the export's either way)"
    ]


@dataclass(frozen=True)
class _Plan:
    """What to write: the pool's rows, and the history partitions to replay."""

    rows: list[dict[str, Any]]
    has_credentials: bool
    has_status: bool
    history: list[VerifiedExport]
    dry_run: bool


def _proxywhirl_key(env: Mapping[str, str]) -> Fernet:
    if not env.get(CACHE_KEY_ENV):
        raise RestoreError(
            f"{CACHE_KEY_ENV} is not set: restore encrypts credentials the way ProxyWhirl does, "
            "with the deployment's key; set it (the same value ProxyWhirl runs with)"
        )
    from cryptography.fernet import Fernet  # only when credentials are restored

    try:
        return Fernet(env[CACHE_KEY_ENV].strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise RestoreError(
            f"{CACHE_KEY_ENV} is not a Fernet key (url-safe base64 of 32 bytes)"
        ) from None


def _into_new(database: Path, plan: _Plan) -> PoolDiff:
    diff = PoolDiff(database, created=True, dry_run=plan.dry_run)
    diff.added = [row["url"] for row in plan.rows]
    if not database.parent.is_dir():
        raise RestoreError(f"{database.parent} does not exist: create the folder first")
    if plan.dry_run:
        # The whole restore runs in memory: a dry run proves every row and history id.
        connection = sqlite3.connect(":memory:", isolation_level=None)
        try:
            _fill_new(connection, database, plan, diff)
        finally:
            connection.close()
        return diff
    partial = database.with_name(f".{database.name}.restoring-{os.getpid()}")
    partial.unlink(missing_ok=True)
    try:
        # Created private before SQLite opens it; SQLite gives its journal the same mode.
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE))
        connection = sqlite3.connect(partial, isolation_level=None)
        try:
            _fill_new(connection, database, plan, diff)
        finally:
            connection.close()
        if database.exists():
            raise RestoreError(f"{database} appeared while restoring: nothing was written to it")
        partial.rename(database)  # the database appears complete, or not at all
    finally:
        partial.unlink(missing_ok=True)
        Path(f"{partial}-journal").unlink(missing_ok=True)
    return diff


def _fill_new(connection: sqlite3.Connection, database: Path, plan: _Plan, diff: PoolDiff) -> None:
    try:
        connection.execute("BEGIN")
        for statement in PROXYWHIRL_DDL:
            connection.execute(statement)
        for row in plan.rows:
            _insert(connection, row, plan.has_credentials, plan.has_status)
        if plan.history:
            diff.history = replay_history(connection, plan.history, dry_run=False, fresh=True)
        connection.execute("COMMIT")
    except sqlite3.IntegrityError as exc:
        raise RestoreError(
            f"the export holds a proxy or a validation id twice ({exc}): the files are damaged "
            f"or edited; nothing was written to {database}"
        ) from exc


def _open_target(database: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    uri = f"file:{quote(str(database.resolve()))}?mode=rw"
    not_ours = (
        f"{database} is not ProxyWhirl's database{{}}: give --db ProxyWhirl's proxies.db, or a "
        "path that does not exist yet to create a new one"
    )
    try:
        connection = sqlite3.connect(
            uri, uri=True, timeout=busy_timeout_ms / 1000, isolation_level=None
        )
    except sqlite3.Error as exc:
        raise RestoreError(f"cannot open {database} for writing: {exc}") from exc
    try:
        for table in ("proxy_identities", "proxy_statuses", "validation_results"):
            present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
            if not present:
                raise RestoreError(not_ours.format(f" (no table {table})"))
            missing = [c for c in REQUIRED_COLUMNS[table] if c not in present]
            if missing:
                raise RestoreError(not_ours.format(f" ({table} has no {', '.join(missing)})"))
    except sqlite3.DatabaseError as exc:
        connection.close()
        if "locked" in str(exc):
            raise _locked(database, exc) from exc
        raise RestoreError(not_ours.format(f" ({exc})")) from exc
    except RestoreError:
        connection.close()
        raise
    return connection


def _locked(database: Path, exc: Exception) -> RestoreError:
    return RestoreError(
        f"{database} is locked by another writer (a running ProxyWhirl?) ({exc}): nothing was "
        "changed; stop the writer or retry"
    )


def _into_existing(
    database: Path, plan: _Plan, on_duplicate: OnDuplicate, busy_timeout_ms: int
) -> PoolDiff:
    dry_run = plan.dry_run
    diff = PoolDiff(database, created=False, dry_run=dry_run)
    connection = _open_target(database, busy_timeout_ms)
    try:
        try:
            connection.execute("BEGIN" if dry_run else "BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _locked(database, exc) from exc
        try:
            for row in plan.rows:
                _restore_row(connection, row, plan, on_duplicate, diff)
            if plan.history:
                diff.history = replay_history(connection, plan.history, dry_run=dry_run)
            connection.execute("ROLLBACK" if dry_run else "COMMIT")
        except sqlite3.OperationalError as exc:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            if "locked" in str(exc) or "busy" in str(exc):
                raise _locked(database, exc) from exc
            raise RestoreError(f"writing {database} failed ({exc}): nothing was changed") from exc
        except sqlite3.IntegrityError as exc:
            connection.execute("ROLLBACK")
            raise RestoreError(
                f"the export holds a proxy or a validation id twice ({exc}): the files are "
                "damaged or edited; nothing was changed"
            ) from exc
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
    finally:
        connection.close()
    return diff


def _restore_row(
    connection: sqlite3.Connection,
    row: dict[str, Any],
    plan: _Plan,
    on_duplicate: OnDuplicate,
    diff: PoolDiff,
) -> None:
    existing = connection.execute(
        f"SELECT {', '.join(IDENTITY_COLUMNS)} FROM proxy_identities WHERE url = ?",
        (row["url"],),
    ).fetchone()
    if existing is None:
        diff.added.append(row["url"])
        if not plan.dry_run:
            _insert(connection, row, plan.has_credentials, plan.has_status)
        return
    if on_duplicate == "skip":
        diff.skipped.append(row["url"])
        return
    current = dict(zip(IDENTITY_COLUMNS, existing, strict=True))
    changes = _changes(current, row, on_duplicate, plan.has_credentials)
    if not changes and on_duplicate == "merge":
        diff.skipped.append(row["url"])
        return
    diff.updated.append(row["url"])
    if plan.dry_run:
        return
    if changes:
        assignments = ", ".join(f"{name} = ?" for name in changes)
        connection.execute(
            f"UPDATE proxy_identities SET {assignments} WHERE url = ?",
            (*changes.values(), row["url"]),
        )
    if plan.has_status:  # overwrite replaces the status; merge keeps an existing one
        _write_status(connection, row, replace=on_duplicate == "overwrite")


def _changes(
    current: dict[str, Any], row: dict[str, Any], on_duplicate: OnDuplicate, has_credentials: bool
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in IDENTITY_COLUMNS:
        if name == "url" or name not in row:
            continue
        if name in CREDENTIALS and not has_credentials:
            continue
        new = row[name]
        if on_duplicate == "merge":
            if current[name] is None and new is not None:
                changes[name] = new
        elif name in CREDENTIALS and new is not None and current[name] is not None:
            # Ciphertexts differ on every encryption; compare what they hold.
            changes[name] = new  # overwrite: the export's credential wins
        elif new != current[name]:
            changes[name] = new
    return changes


def _insert(
    connection: sqlite3.Connection, row: dict[str, Any], has_credentials: bool, has_status: bool
) -> None:
    values = [
        (row.get(name) if has_credentials else None) if name in CREDENTIALS else row.get(name)
        for name in IDENTITY_COLUMNS
    ]
    connection.execute(
        f"INSERT INTO proxy_identities ({', '.join(IDENTITY_COLUMNS)}) VALUES "
        f"({', '.join('?' for _ in IDENTITY_COLUMNS)})",
        values,
    )
    # ProxyWhirl gives every proxy a status row (its load() joins on it): the exported
    # status, or the one add_proxy creates.
    _write_status(connection, row if has_status else {**row, **UNCHECKED}, replace=True)


def _write_status(connection: sqlite3.Connection, row: dict[str, Any], *, replace: bool) -> None:
    """The status as ProxyWhirl writes it: ``success_rate_7d`` stays NULL (0.3.3 never sets
    it), ``updated_at`` is the moment of the last counted check, or of the add."""
    columns = ("proxy_url", *STATUS_COLUMNS, "success_rate_7d", "updated_at")
    # Same text form, so text order is time order (as SQLite compares them).
    updated_at = max(m for m in (row["last_check_at"], row["discovered_at"]) if m is not None)
    values = (row["url"], *(row[name] for name in STATUS_COLUMNS), None, updated_at)
    verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
    connection.execute(
        f"{verb} INTO proxy_statuses ({', '.join(columns)}) VALUES "
        f"({', '.join('?' for _ in columns)})",
        values,
    )


__all__ = [
    "CredentialKeyError",
    "HistoryRange",
    "OnDuplicate",
    "PoolDiff",
    "read_pool",
    "restore_pool",
]
