"""The embedded instance's event log (export_assets/instance.py): Dagster's SQLite event
log files, written and watched through kept connections."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance
from dagster._core.event_api import EventLogCursor
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import EventLogStorage, SqliteEventLogStorage

from export_assets import instance as pooled
from export_assets.instance import PooledSqliteEventLogStorage

ROOT = Path(__file__).resolve().parent.parent
RUN = "3c5f0b7e-0000-4000-8000-000000000001"


def entry(text: str, run_id: str = RUN) -> EventLogEntry:
    return EventLogEntry(  # type: ignore[no-untyped-call]
        error_info=None,
        level=logging.INFO,
        user_message=text,
        run_id=run_id,
        timestamp=time.time(),
    )


def messages(storage: EventLogStorage, run_id: str = RUN) -> list[str]:
    return [event.user_message for event in storage.get_logs_for_run(run_id)]


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[PooledSqliteEventLogStorage]:
    kept = PooledSqliteEventLogStorage(str(tmp_path / "runs"))
    yield kept
    kept.dispose()


# A second process writing to the same run's database, keeping its connection open until
# its stdin closes.
WRITER = """
import logging, sys, time
from dagster._core.event_api import EventLogCursor
from dagster._core.events.log import EventLogEntry
from export_assets.instance import PooledSqliteEventLogStorage
storage = PooledSqliteEventLogStorage(sys.argv[1])
for n in range(int(sys.argv[3])):
    storage.store_event(EventLogEntry(error_info=None, level=logging.INFO,
        user_message=f"from the writer {n}", run_id=sys.argv[2], timestamp=time.time()))
print("written", flush=True)
sys.stdin.read()
storage.dispose()
"""


def writer(base_dir: Path, count: int, run_id: str = RUN) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(base_dir), run_id, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "written"
    return process


def test_a_new_run_database_is_the_one_dagster_creates(tmp_path: Path) -> None:
    def created(storage: SqliteEventLogStorage, folder: Path) -> tuple[object, ...]:
        with storage.run_connection(RUN):
            pass
        storage.dispose()
        connection = sqlite3.connect(folder / f"{RUN}.db")
        try:
            return (
                sorted(connection.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")),
                connection.execute("SELECT version_num FROM alembic_version").fetchall(),
                connection.execute("PRAGMA journal_mode").fetchall(),
            )
        finally:
            connection.close()

    dagsters = created(SqliteEventLogStorage(str(tmp_path / "a")), tmp_path / "a")
    ours = created(PooledSqliteEventLogStorage(str(tmp_path / "b")), tmp_path / "b")
    assert ours == dagsters
    assert ours[2] == [("wal",)]


def test_dagsters_storage_and_this_one_share_the_files(tmp_path: Path) -> None:
    base = str(tmp_path / "runs")
    dagster, kept = SqliteEventLogStorage(base), PooledSqliteEventLogStorage(base)
    try:
        for n in range(3):
            dagster.store_event(entry(f"dagster {n}"))
            kept.store_event(entry(f"kept {n}"))
        expected = [f"{who} {n}" for n in range(3) for who in ("dagster", "kept")]
        assert messages(dagster) == expected
        assert messages(kept) == expected
    finally:
        dagster.dispose()
        kept.dispose()


def test_each_write_is_committed_when_it_returns(
    storage: PooledSqliteEventLogStorage, tmp_path: Path
) -> None:
    storage.store_event(entry("one"))
    # Read by a plain connection of another process's kind, while ours stays open.
    connection = sqlite3.connect(tmp_path / "runs" / f"{RUN}.db")
    try:
        assert connection.execute("SELECT count(*) FROM event_logs").fetchone() == (1,)
    finally:
        connection.close()


def test_a_second_process_writes_while_connections_are_kept(
    storage: PooledSqliteEventLogStorage, tmp_path: Path
) -> None:
    storage.store_event(entry("first"))
    process = writer(tmp_path / "runs", 20)
    try:
        storage.store_event(entry("last"))
        assert messages(storage) == [
            "first",
            *(f"from the writer {n}" for n in range(20)),
            "last",
        ]
    finally:
        process.communicate("")
    assert process.returncode == 0


def test_a_watcher_sees_another_processs_events_while_both_keep_connections(
    storage: PooledSqliteEventLogStorage, tmp_path: Path
) -> None:
    # Neither process closes its connection, so SQLite never copies its write-ahead log
    # into the database file: a watcher of the database file alone would wait forever.
    storage.store_event(entry("before the watch"))
    seen: list[str] = []
    arrived = threading.Event()

    def callback(event: EventLogEntry, cursor: str) -> None:
        seen.append(event.user_message)
        if len(seen) == 5:
            arrived.set()

    with storage.run_connection(RUN) as connection:  # the cursor: after what exists
        last = connection.exec_driver_sql("SELECT max(id) FROM event_logs").scalar()
    storage.watch(RUN, str(EventLogCursor.from_storage_id(last)), callback)
    process = writer(tmp_path / "runs", 5)
    try:
        assert arrived.wait(15), seen
        assert seen == [f"from the writer {n}" for n in range(5)]
    finally:
        process.communicate("")
        storage.end_watch(RUN, callback)


# Processes creating the same new run database at once: each waits for the go file.
CREATOR = """
import logging, sys, time
from pathlib import Path
from dagster._core.events.log import EventLogEntry
from export_assets.instance import PooledSqliteEventLogStorage
storage = PooledSqliteEventLogStorage(sys.argv[1])
print("ready", flush=True)
while not Path(sys.argv[2]).exists():
    time.sleep(0.001)
for n in range(20):
    storage.store_event(EventLogEntry(error_info=None, level=logging.INFO,
        user_message=f"{sys.argv[3]} {n}", run_id=sys.argv[4], timestamp=time.time()))
storage.dispose()
"""


def test_processes_creating_one_run_database_at_once_all_write(
    storage: PooledSqliteEventLogStorage, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CREATOR, str(tmp_path / "runs"), str(go), f"p{n}", RUN],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
    go.touch()
    for process in processes:
        _, errors = process.communicate(timeout=120)
        assert process.returncode == 0, errors[-2000:]
    written = messages(storage)
    assert sorted(written) == sorted(f"p{p} {n}" for p in range(4) for n in range(20))


def test_a_database_removed_under_a_kept_connection_is_created_again(
    storage: PooledSqliteEventLogStorage, tmp_path: Path
) -> None:
    storage.store_event(entry("lost"))
    for path in (tmp_path / "runs").glob(f"{RUN}.db*"):
        path.unlink()
    storage.store_event(entry("after"))
    assert messages(storage) == ["after"]
    assert (tmp_path / "runs" / f"{RUN}.db").exists()


def test_wipe_closes_the_kept_connections(storage: PooledSqliteEventLogStorage) -> None:
    storage.store_event(entry("before"))
    storage.wipe()
    assert messages(storage) == []
    storage.store_event(entry("after"))
    assert messages(storage) == ["after"]


def test_only_the_last_databases_keep_an_engine(
    storage: PooledSqliteEventLogStorage,
) -> None:
    runs = [f"{RUN[:-2]}{n:02d}" for n in range(pooled.KEPT_SHARDS + 6)]
    for run_id in runs:
        storage.store_event(entry(run_id, run_id))
    assert len(storage._engines) == pooled.KEPT_SHARDS
    assert runs[-1] in storage._engines
    assert all(messages(storage, run_id) == [run_id] for run_id in runs)


def _write_in_child(storage: PooledSqliteEventLogStorage) -> None:
    storage.store_event(entry("child"))
    os._exit(0 if messages(storage) == ["parent", "child"] else 1)


@pytest.mark.skipif(sys.platform != "linux", reason="fork")
def test_a_forked_child_opens_its_own_connections(storage: PooledSqliteEventLogStorage) -> None:
    storage.store_event(entry("parent"))
    child = multiprocessing.get_context("fork").Process(target=_write_in_child, args=(storage,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    storage.store_event(entry("parent again"))
    assert messages(storage) == ["parent", "child", "parent again"]


def test_the_repos_dagster_yaml_keeps_the_event_log_in_dagster_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, PooledSqliteEventLogStorage)
        storage.store_event(entry("in the instance"))
        assert messages(storage) == ["in the instance"]
    assert (tmp_path / "history" / "runs" / f"{RUN}.db").is_file()
    assert (tmp_path / "history" / "runs" / "index.db").is_file()


def test_an_instance_opened_from_its_folder_keeps_its_event_log_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(elsewhere))  # not this instance's
    with DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.store_event(entry("here"))
        # What a run worker or step process gets: the instance by reference.
        with DagsterInstance.from_ref(instance.get_ref()) as again:
            assert messages(again.event_log_storage) == ["here"]
    assert (home / "history" / "runs" / f"{RUN}.db").is_file()
    assert not elsewhere.exists()


def test_a_cli_command_without_dagster_home_uses_its_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As `dagster definitions validate -w workspace.yaml` or `dagster dev` run in the repo
    # with no DAGSTER_HOME: the repo's dagster.yaml, a temporary folder for the storage.
    from dagster._core.instance.ref import InstanceRef

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    temporary = tmp_path / ".tmp_dagster_home"
    temporary.mkdir()
    ref = InstanceRef.from_dir(str(temporary), config_dir=str(ROOT))
    with DagsterInstance.from_ref(ref) as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        instance.event_log_storage.store_event(entry("temporary"))
    assert (temporary / "history" / "runs" / f"{RUN}.db").is_file()


def test_an_explicit_base_dir_is_used(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text(
        "event_log_storage:\n"
        "  module: export_assets.instance\n"
        "  class: PooledSqliteEventLogStorage\n"
        "  config:\n"
        f"    base_dir: {tmp_path / 'events'}\n"
    )
    with DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        instance.event_log_storage.store_event(entry("explicit"))
    assert (tmp_path / "events" / f"{RUN}.db").is_file()
