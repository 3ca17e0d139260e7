"""``restore pool``: a verified ``proxy_list`` export back into ProxyWhirl's ``proxies.db``."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import pyarrow.parquet as pq
from cryptography.fernet import Fernet

from export_assets.crypto import CACHE_KEY_ENV, CredentialKeyError, encrypt_database_credential
from export_assets.exports.manifest import ExportManifest
from export_assets.restore.verify import (
    RestoreError,
    VerifiedExport,
    check_references,
    credential_reader,
    decode_credentials,
    verify_export,
)
from export_assets.source.schema import DATETIME_TEXT_FORMAT, PROXYWHIRL_DDL, REQUIRED_COLUMNS

OnDuplicate = Literal["skip", "overwrite", "merge"]
POOL_FORMATS = ("jsonl", "json", "parquet")
DEFAULT_BUSY_TIMEOUT_MS = 5_000

IDENTITY_COLUMNS = REQUIRED_COLUMNS["proxy_identities"]
CREDENTIALS = ("username", "password")
# proxy_identities columns a row cannot do without (NOT NULL in ProxyWhirl's DDL).
NEEDED = ("url", "protocol", "host", "port", "is_residential", "is_datacenter", "source",
          "discovered_at")  # fmt: skip
STATUS_COLUMNS = (
    "health_status", "last_success_at", "last_failure_at", "last_check_at",
    "consecutive_successes", "consecutive_failures", "total_checks", "total_successes",
    "avg_response_time_ms", "success_rate_7d",
)  # fmt: skip
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

    def summary(self) -> str:
        """One line: what was (or would be) written where."""
        verb = "would restore" if self.dry_run else "restored"
        new = " (a new ProxyWhirl database)" if self.created else ""
        return (
            f"{verb} into {self.database}{new}: {len(self.added)} added, "
            f"{len(self.updated)} updated, {len(self.skipped)} skipped"
        )

    def lines(self) -> list[str]:
        """The diff, one proxy per line (URLs hold no credentials)."""
        return (
            [f"+ {url}" for url in self.added]
            + [f"~ {url}" for url in self.updated]
            + [f"= {url} (skipped)" for url in self.skipped]
        )


def read_pool(export: VerifiedExport) -> list[dict[str, Any]]:
    """The export's rows as ProxyWhirl's database holds them (text timestamps, 0/1 booleans)."""
    manifest = export.manifest
    names = [column["name"] for column in manifest.columns]
    missing = [name for name in NEEDED if name not in names]
    if missing:
        raise RestoreError(
            f"{export.folder} lacks the column(s) {', '.join(missing)} that ProxyWhirl's "
            "proxy_identities needs: export proxy_list with every field (no fields selection)"
        )
    try:
        if manifest.format == "parquet":
            with export.open_plain() as stream:
                table = pq.read_table(stream)
            raw_rows: list[dict[str, Any]] = table.to_pylist()
        elif manifest.format == "jsonl":
            with export.open_plain() as stream:
                raw_rows = [json.loads(line) for line in stream if line.strip()]
        else:
            with export.open_plain() as stream:
                raw_rows = json.load(stream)
    except RestoreError:
        raise
    except (ValueError, OSError) as exc:
        raise RestoreError(
            f"{export.data_file} does not parse as {manifest.format}: {exc}"
        ) from exc
    if len(raw_rows) != manifest.total_rows:
        raise RestoreError(
            f"{export.data_file} holds {len(raw_rows)} rows, its manifest says "
            f"{manifest.total_rows}: the file is damaged"
        )
    return [{name: _db_value(name, row.get(name)) for name in names} for row in raw_rows]


def _db_value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _TIMESTAMPS:
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if isinstance(value, datetime):
            return value.replace(tzinfo=None).strftime(DATETIME_TEXT_FORMAT)
    if name in _BOOLEANS:
        return int(bool(value))
    return value


def restore_pool(
    path: Path, database: Path, *, on_duplicate: OnDuplicate = "skip", dry_run: bool = False,
    environ: Mapping[str, str] | None = None, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
) -> PoolDiff:  # fmt: skip
    """Restore a ``proxy_list`` export into ``database`` in one transaction.

    Everything that can fail is checked first (manifest, sha256, chain, schema version,
    credentials decrypted, the target's schema); a failure leaves the target unchanged.
    """
    env = os.environ if environ is None else environ
    export = verify_export(path, "proxy_list", POOL_FORMATS)
    rows = read_pool(export)
    has_credentials = all(name in rows[0] for name in CREDENTIALS) if rows else False
    has_status = all(name in rows[0] for name in STATUS_COLUMNS) if rows else False
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
    updated_at = _as_of(export.manifest)
    database = Path(database)
    if database.exists():
        return _into_existing(
            database, rows, on_duplicate, dry_run, has_credentials, has_status, updated_at,
            busy_timeout_ms,
        )  # fmt: skip
    return _into_new(database, rows, dry_run, has_credentials, has_status, updated_at)


def _proxywhirl_key(env: Mapping[str, str]) -> Fernet:
    if not env.get(CACHE_KEY_ENV):
        raise RestoreError(
            f"{CACHE_KEY_ENV} is not set: restore encrypts credentials the way ProxyWhirl does, "
            "with the deployment's key; set it (the same value ProxyWhirl runs with)"
        )
    try:
        return Fernet(env[CACHE_KEY_ENV].strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise RestoreError(
            f"{CACHE_KEY_ENV} is not a Fernet key (url-safe base64 of 32 bytes)"
        ) from None


def _as_of(manifest: ExportManifest) -> str:
    as_of = manifest.source.get("as_of")
    try:
        moment = datetime.fromisoformat(str(as_of).replace("Z", "+00:00"))
    except ValueError:
        moment = datetime.fromisoformat(manifest.created_at.replace("Z", "+00:00"))
    return moment.replace(tzinfo=None).strftime(DATETIME_TEXT_FORMAT)


def _into_new(
    database: Path, rows: list[dict[str, Any]], dry_run: bool, has_credentials: bool,
    has_status: bool, updated_at: str,
) -> PoolDiff:  # fmt: skip
    diff = PoolDiff(database, created=True, dry_run=dry_run)
    diff.added = [row["url"] for row in rows]
    if dry_run:
        return diff
    if not database.parent.is_dir():
        raise RestoreError(f"{database.parent} does not exist: create the folder first")
    partial = database.with_name(f".{database.name}.restoring-{os.getpid()}")
    partial.unlink(missing_ok=True)
    try:
        connection = sqlite3.connect(partial, isolation_level=None)
        try:
            connection.execute("BEGIN")
            for statement in PROXYWHIRL_DDL:
                connection.execute(statement)
            for row in rows:
                _insert(connection, row, has_credentials, has_status, updated_at)
            connection.execute("COMMIT")
        finally:
            connection.close()
        if database.exists():
            raise RestoreError(f"{database} appeared while restoring: nothing was written to it")
        partial.rename(database)  # the database appears complete, or not at all
    finally:
        partial.unlink(missing_ok=True)
    return diff


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
        for table in ("proxy_identities", "proxy_statuses"):
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
    database: Path, rows: list[dict[str, Any]], on_duplicate: OnDuplicate, dry_run: bool,
    has_credentials: bool, has_status: bool, updated_at: str, busy_timeout_ms: int,
) -> PoolDiff:  # fmt: skip
    diff = PoolDiff(database, created=False, dry_run=dry_run)
    connection = _open_target(database, busy_timeout_ms)
    try:
        try:
            connection.execute("BEGIN" if dry_run else "BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _locked(database, exc) from exc
        try:
            for row in rows:
                existing = connection.execute(
                    f"SELECT {', '.join(IDENTITY_COLUMNS)} FROM proxy_identities WHERE url = ?",
                    (row["url"],),
                ).fetchone()
                if existing is None:
                    diff.added.append(row["url"])
                    if not dry_run:
                        _insert(connection, row, has_credentials, has_status, updated_at)
                elif on_duplicate == "skip":
                    diff.skipped.append(row["url"])
                else:
                    current = dict(zip(IDENTITY_COLUMNS, existing, strict=True))
                    changes = _changes(current, row, on_duplicate, has_credentials)
                    if not changes and on_duplicate == "merge":
                        diff.skipped.append(row["url"])
                        continue
                    diff.updated.append(row["url"])
                    if dry_run:
                        continue
                    if changes:
                        assignments = ", ".join(f"{name} = ?" for name in changes)
                        connection.execute(
                            f"UPDATE proxy_identities SET {assignments} WHERE url = ?",
                            (*changes.values(), row["url"]),
                        )
                    if has_status and on_duplicate == "overwrite":
                        _write_status(connection, row, updated_at, replace=True)
                    elif has_status:  # merge keeps existing statuses
                        _write_status(connection, row, updated_at, replace=False)
            connection.execute("ROLLBACK" if dry_run else "COMMIT")
        except sqlite3.OperationalError as exc:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            if "locked" in str(exc) or "busy" in str(exc):
                raise _locked(database, exc) from exc
            raise RestoreError(f"writing {database} failed ({exc}): nothing was changed") from exc
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
    finally:
        connection.close()
    return diff


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
    connection: sqlite3.Connection, row: dict[str, Any], has_credentials: bool,
    has_status: bool, updated_at: str,
) -> None:  # fmt: skip
    values = [
        (row.get(name) if has_credentials else None) if name in CREDENTIALS else row.get(name)
        for name in IDENTITY_COLUMNS
    ]
    connection.execute(
        f"INSERT INTO proxy_identities ({', '.join(IDENTITY_COLUMNS)}) VALUES "
        f"({', '.join('?' for _ in IDENTITY_COLUMNS)})",
        values,
    )
    if has_status:
        _write_status(connection, row, updated_at, replace=True)


def _write_status(
    connection: sqlite3.Connection, row: dict[str, Any], updated_at: str, *, replace: bool
) -> None:
    columns = ("proxy_url", *STATUS_COLUMNS, "updated_at")
    values = (row["url"], *(row[name] for name in STATUS_COLUMNS), updated_at)
    verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
    connection.execute(
        f"{verb} INTO proxy_statuses ({', '.join(columns)}) VALUES "
        f"({', '.join('?' for _ in columns)})",
        values,
    )


__all__ = ["CredentialKeyError", "OnDuplicate", "PoolDiff", "read_pool", "restore_pool"]
