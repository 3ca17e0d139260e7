"""The event log of the embedded default instance (``dagster.yaml``).

It is Dagster's own run-sharded SQLite event log (``history/runs/*.db`` in
``$DAGSTER_HOME``, the same files, the same schema), with one change. Dagster's storage
builds a new SQLAlchemy engine for every read and every write, so that each of them
configures the dialect again, compiles its statement again and opens the database file
again. Measured in one process, that is about 25 ms of Python for each event. A day of
``daily_export_job`` writes a planned event for each of its 6 assets and 12 checks when
it is launched, and about 150 events while it runs. This storage keeps one engine, with
its open connection, for each of the last ``KEPT_SHARDS`` databases it used. Each write
is still its own transaction.

Two consequences of keeping connections open are handled here:

- SQLite moves a write-ahead log into the database file at checkpoints, which happen
  when the last connection closes or the log grows past 1,000 pages. Dagster's watcher
  of a run's events (the UI's live run logs) waits for changes to the database file, so
  it would not see events until a checkpoint. This watcher also wakes on writes to the
  log (``<run id>.db-wal``).
- A database file can be removed under a kept connection (``wipe``, or another
  process). Each use checks that the file is still the one the connection opened, and
  otherwise opens it again.

A new run's database is created and stamped with the migrations loaded once per
process, not loaded again for each run (about 110 ms each time).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

import sqlalchemy as db
import sqlalchemy.exc as db_exc
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from dagster import Field
from dagster._config import StringSource
from dagster._core.storage.event_log import SqlEventLogStorageMetadata
from dagster._core.storage.event_log import SqliteEventLogStorage as DagsterSqliteEventLogStorage
from dagster._core.storage.event_log.sqlite import sqlite_event_log
from dagster._core.storage.sql import get_alembic_config
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from watchdog.events import FileSystemEvent
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

if TYPE_CHECKING:
    from dagster import DagsterInstance
    from dagster._core.event_api import EventHandlerFn
    from dagster._serdes import ConfigurableClassData
    from sqlalchemy.engine import Connection, Engine

# Databases whose engine and connection are kept: the index and the runs being written.
KEPT_SHARDS = 16


@cache
def migrations() -> ScriptDirectory:
    """Dagster's event log migrations, loaded once per process."""
    return ScriptDirectory.from_config(get_alembic_config(sqlite_event_log.__file__))


def file_identity(path: str) -> tuple[int, int] | None:
    """Which file ``path`` is (device, inode), or None if there is none."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return (status.st_dev, status.st_ino)


class PooledSqliteEventLogStorage(DagsterSqliteEventLogStorage):
    """Dagster's run-sharded SQLite event log, keeping each database's engine open.

    Named in ``dagster.yaml``, it keeps the databases where Dagster's default storage keeps
    them, in the instance's folder (``history/runs``), unless ``base_dir`` says otherwise::

        event_log_storage:
          module: export_assets.instance
          class: PooledSqliteEventLogStorage
    """

    def __init__(
        self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None
    ) -> None:
        self._engines: OrderedDict[str, tuple[Engine, tuple[int, int] | None]] = OrderedDict()
        self._engines_pid = os.getpid()
        self._index_tables: set[str] = set()
        self._inst_data = inst_data
        if base_dir is not None:
            super().__init__(base_dir, inst_data)
        # else the instance's folder says where, when the instance registers itself

    @classmethod
    def config_type(cls) -> Mapping[str, Any]:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledSqliteEventLogStorage:
        return cls(config_value.get("base_dir"), inst_data=inst_data)

    def register_instance(self, instance: DagsterInstance) -> None:
        if not hasattr(self, "_base_dir"):
            # Where Dagster's default storage keeps the event log: the instance's own folder
            # ($DAGSTER_HOME, or the temporary one of a CLI command run without it).
            base_dir = os.path.join(instance.root_directory, "history", "runs", "")
            DagsterSqliteEventLogStorage.__init__(self, base_dir, self._inst_data)
        super().register_instance(instance)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
                self._remember_file(shard)
            with engine.connect() as connection, connection.begin():
                yield connection

    def _engine(self, shard: str) -> Engine:
        """The kept engine of ``shard``'s database, or a new one (the lock is held)."""
        if self._engines_pid != os.getpid():
            # A forked child: its parent's connections are not its own to use or close.
            for engine, _ in self._engines.values():
                engine.dispose(close=False)
            self._engines.clear()
            self._initialized_dbs = set()
            self._engines_pid = os.getpid()
        kept = self._engines.get(shard)
        if kept is not None:
            engine, identity = kept
            if identity is None or identity == file_identity(self.path_for_shard(shard)):
                self._engines.move_to_end(shard)
                return engine
            # The file was removed or replaced: connect to the one there now.
            self._forget(shard)
        engine = db.create_engine(
            self.conn_string_for_shard(shard),
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
        )
        self._engines[shard] = (engine, file_identity(self.path_for_shard(shard)))
        while len(self._engines) > KEPT_SHARDS:
            self._forget(next(iter(self._engines)))
        return engine

    def _remember_file(self, shard: str) -> None:
        """Note which file ``shard``'s kept engine opened, once it exists."""
        engine, identity = self._engines[shard]
        if identity is None:
            self._engines[shard] = (engine, file_identity(self.path_for_shard(shard)))

    def _forget(self, shard: str) -> None:
        engine, _ = self._engines.pop(shard)
        engine.dispose()
        self._initialized_dbs.discard(shard)

    def _forget_all(self) -> None:
        with self._db_lock:
            for shard in list(self._engines):
                self._forget(shard)

    def has_table(self, table_name: str) -> bool:
        # Asked before many writes (each check event, each claim of a pool slot), and
        # Dagster answers with a new engine each time. Tables are never dropped, so a yes
        # is kept; a no is asked again (a migration may add the table).
        if table_name in self._index_tables:
            return True
        present = super().has_table(table_name)
        if present:
            self._index_tables.add(table_name)
        return present

    def _initdb(self, engine: Engine, for_index_shard: bool = False) -> None:
        if not for_index_shard:
            try:
                if self._initdb_run_shard(engine):
                    return
            except (db_exc.DatabaseError, sqlite3.DatabaseError):
                pass  # e.g. another process creating it: Dagster's own retrying path
        super()._initdb(engine, for_index_shard)

    @staticmethod
    def _initdb_run_shard(engine: Engine) -> bool:
        """Create a new run's database, or accept one at the head revision, as Dagster does
        but with the migrations loaded once. False for anything else (an older database,
        a partly created one), which Dagster's own path handles."""
        script = migrations()
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
            if revision == script.get_current_head():
                return True
            if revision is not None or db.inspect(connection).get_table_names():
                return False
            connection.rollback()  # end the read: the journal mode changes outside one
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
            # One transaction, not one per table and index: a single commit, and another
            # process creating the same database waits for it, then finds it complete.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            SqlEventLogStorageMetadata.create_all(connection)
            MigrationContext.configure(connection).stamp(script, "head")
            connection.commit()
        return True

    def watch(self, run_id: str, cursor: str | None, callback: EventHandlerFn) -> None:
        # Dagster's watch, with this module's watchdog.
        observer: BaseObserver | None = self._obs
        if observer is None:
            observer = Observer()
            observer.start()
            self._obs = observer  # type: ignore[assignment]  # Dagster types it as None
        watchdog = RunEventsWatchdog(self, run_id, callback, cursor)
        self._watchers[run_id][callback] = (
            watchdog,
            observer.schedule(watchdog, self._base_dir, recursive=True),
        )

    def end_watch(self, run_id: str, handler: EventHandlerFn) -> None:
        watching = self._watchers[run_id].get(handler)
        if watching is not None and isinstance(watching[0], RunEventsWatchdog):
            watching[0].stop()
        super().end_watch(run_id, handler)

    def wipe(self) -> None:
        self._forget_all()
        super().wipe()

    def dispose(self) -> None:
        super().dispose()
        self._forget_all()


class RunEventsWatchdog(sqlite_event_log.SqliteEventLogStorageWatchdog):
    """Dagster's watcher of one run's events, also woken by writes to the run's
    write-ahead log (the kept connections leave new events there until a checkpoint).

    A writer appends its transaction to the log before it publishes the commit in the
    log's shared-memory index, which raises no file event: a read at the append may not
    see the last transaction yet. So each wake reads now and again after each of
    ``RECHECK_SECONDS`` with no newer wake.
    """

    RECHECK_SECONDS = (0.1, 1.0)

    def __init__(
        self,
        storage: PooledSqliteEventLogStorage,
        run_id: str,
        callback: EventHandlerFn,
        cursor: str | None,
    ) -> None:
        super().__init__(storage, run_id, callback, cursor)
        self._patterns = [self._log_path, f"{self._log_path}-wal"]
        self._reading = threading.Lock()
        self._recheck: threading.Timer | None = None
        self._stopped = False

    def on_modified(self, event: FileSystemEvent) -> None:
        self._read(0)

    def _read(self, recheck: int) -> None:
        with self._reading:
            if self._stopped:
                return
            self._process_log()
            if self._recheck is not None:
                self._recheck.cancel()
                self._recheck = None
            if recheck < len(self.RECHECK_SECONDS) and not self._stopped:
                self._recheck = threading.Timer(
                    self.RECHECK_SECONDS[recheck], self._read, (recheck + 1,)
                )
                self._recheck.daemon = True
                self._recheck.start()

    def stop(self) -> None:
        """No more reads (the watch ended)."""
        self._stopped = True
        timer = self._recheck
        if timer is not None:
            timer.cancel()
