"""Restore to an identical deployment, with the real ProxyWhirl 0.3.3 library on both sides.

A deployment is written through ProxyWhirl's own API (``add_proxy`` with and without
credentials, ``record_validation`` and ``record_validations_batch`` with time moved by
time-machine, checks recorded before a proxy was added, a removal), exported through
Dagster, restored into an empty folder with the CLI, and loaded by ProxyWhirl's own
``SQLiteStorage.load()``: every field of every proxy equals the original's. Re-exported,
the restored deployment gives byte-identical ``proxy_list`` and ``validation_events`` files.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet
from dagster import AssetsDefinition, DagsterInstance, materialize

from export_assets.cli import main
from export_assets.defs.exports import proxy_list, validation_events
from export_assets.lib.exports.manifest import ExportManifest
from export_assets.lib.restore import RestoreError
from export_assets.lib.restore.pool import restore_pool
from export_assets_tests.conftest import configured, export_resources

DAYS = [date(2026, 11, 18), date(2026, 11, 19), date(2026, 11, 20)]
LAST = DAYS[-1].isoformat()
HISTORY = f"{DAYS[0]}..{LAST}"
CACHE_KEY = Fernet.generate_key().decode()
EXPORT_KEY = Fernet.generate_key().decode()
PROXIES_PER_DAY = 8
# Error messages as remote hosts send them: commas, quotes, line ends, formula starts, "".
MESSAGES = [
    None,
    "",
    "timed out after 5.0s",
    'proxy said: "407, auth required"',
    "line one\nline two",
    '=HYPERLINK("http://evil.example/")',
    "-1 bytes read",
    "'quoted' reply",
]


def _at(day: date, hour: int, minute: int = 0, micro: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, 0, micro, tzinfo=UTC)


async def _write_deployment(database: Path) -> None:
    """Three days of a ProxyWhirl pool, written by ProxyWhirl itself."""
    import time_machine
    from proxywhirl.models import Proxy
    from proxywhirl.storage import SQLiteStorage

    rng = random.Random(15)
    storage = SQLiteStorage(database)
    await storage.initialize()
    protocols = ["http", "https", "socks4", "socks5"]
    added: list[str] = []
    try:
        for number, day in enumerate(DAYS):
            new = []
            for i in range(number * PROXIES_PER_DAY, (number + 1) * PROXIES_PER_DAY):
                url = f"{protocols[i % 4]}://10.0.{i // 200}.{i % 200 + 1}:{8000 + i}"
                options: dict[str, Any] = {"url": url, "allow_local": True}
                if i % 3 == 0:
                    options |= {"username": f"user{i}", "password": f'pä$s,"{i}"=x'}
                if i % 4 == 1:
                    options |= {"country_code": "DE", "source_url": "https://lists.example/a"}
                new.append(Proxy(**options))
            # Checks recorded for URLs before their proxy is added: history only.
            for proxy in new[:2]:
                with time_machine.travel(_at(day, 0, 30, 123), tick=False):
                    await storage.record_validation(proxy.url, True, 88.125)
            for k, proxy in enumerate(new):
                with time_machine.travel(_at(day, 1, k, 500 + k), tick=False):
                    await storage.add_proxy(proxy)
                added.append(proxy.url)
            if number == 1:  # a removal: its history stays
                with time_machine.travel(_at(day, 1, 30), tick=False):
                    await storage.delete(added.pop(3))
            for hour in range(2, 8):
                for k, url in enumerate(added):
                    if rng.random() < 0.25 or url.endswith(("8006", "8013")):
                        continue  # some proxies stay unchecked, some go without a check
                    moment = _at(day, hour, k % 60, rng.randrange(1_000_000))
                    with time_machine.travel(moment, tick=False):
                        if rng.random() < 0.65:
                            await storage.record_validation(url, True, rng.uniform(20, 900))
                        else:
                            await storage.record_validation(
                                url,
                                False,
                                None,
                                rng.choice(["timeout", "ssl_error"]),
                                rng.choice(MESSAGES),
                            )
            # A batch: one validated_at for every row, as ProxyWhirl writes it.
            batch = [
                (url, ok, 50.5 if ok else None, None if ok else "connection_refused")
                for url, ok in zip(added[::5], [True, False] * 10, strict=False)
            ]
            with time_machine.travel(_at(day, 9), tick=False):
                await storage.record_validations_batch(batch)
            with time_machine.travel(_at(day, 10), tick=False):
                await storage.record_validation("http://192.0.2.9:1", False, None, "timeout")
    finally:
        await storage.close()


async def _load(database: Path) -> dict[str, dict[str, Any]]:
    from proxywhirl.storage import SQLiteStorage

    storage = SQLiteStorage(database)
    try:
        return {proxy["url"]: proxy for proxy in await storage.load()}
    finally:
        await storage.close()


def load(database: Path) -> dict[str, dict[str, Any]]:
    """ProxyWhirl's own view of a database (its ``SQLiteStorage.load()``)."""
    return asyncio.run(_load(database))


def table(database: Path, name: str, order: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(database)
    try:
        return connection.execute(f"SELECT * FROM {name} ORDER BY {order}").fetchall()
    finally:
        connection.close()


def export(
    database: Path,
    destination: Path,
    assets: list[AssetsDefinition],
    day: str,
    **config: Any,
) -> None:
    """Materialize ``assets`` for ``day`` with the same run config each, checks passing."""
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [configured(a, _for(a, config)) for a in assets],
            partition_key=day,
            resources=export_resources(
                database,
                destination,
                log_dir=str(database.parent / "logs"),
                config_path=str(database.parent / "proxywhirl.toml"),
            ),
            instance=instance,
        )
    assert result.success
    assert all(check.passed for check in result.get_asset_check_evaluations())


def _for(asset: AssetsDefinition, config: dict[str, Any]) -> dict[str, Any]:
    """The run config of one asset: only proxy_list takes a credential policy."""
    if asset.key.path[-1] == "proxy_list":
        return config
    return {name: value for name, value in config.items() if name != "credentials"}


def export_all(database: Path, destination: Path, **config: Any) -> None:
    """validation_events of every day and proxy_list of the last, with ``config``."""
    for day in DAYS[:-1]:
        export(database, destination, [validation_events], day.isoformat(), **config)
    export(database, destination, [proxy_list, validation_events], LAST, **config)


def folder(destination: Path, asset: str, day: str = LAST) -> Path:
    return destination / asset / f"dt={day}"


def data_files(destination: Path) -> dict[str, bytes]:
    """Every data file of a destination by path (manifests aside: they name runs)."""
    return {
        str(path.relative_to(destination)): path.read_bytes()
        for path in sorted(destination.rglob("*"))
        if path.is_file() and path.name != "_manifest.json"
    }


@pytest.fixture(scope="module")
def keys() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROXYWHIRL_CACHE_ENCRYPTION_KEY", CACHE_KEY)
        patch.setenv("EXPORT_ENCRYPTION_KEY", EXPORT_KEY)
        for name in ("PROXYWHIRL_CACHE_KEY_PREVIOUS", "EXPORT_PASSWORD", "PROXYWHIRL_KEY"):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory, keys: None) -> Path:
    """The deployment ProxyWhirl wrote: ``proxies.db`` (and an empty logs folder)."""
    root = tmp_path_factory.mktemp("original")
    (root / "logs").mkdir()
    asyncio.run(_write_deployment(root / "proxies.db"))
    return root / "proxies.db"


@pytest.fixture(scope="module")
def exports(original: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """plain: the defaults (csv.gz, redacted) of every day; encrypted: the default format
    with credentials encrypted; backup: backup_job's json, encrypted."""
    root = tmp_path_factory.mktemp("exports")
    export_all(original, root / "plain")
    export(original, root / "encrypted", [proxy_list], LAST, credentials="encrypt")
    export(original, root / "backup", [proxy_list], LAST, format="json", credentials="encrypt")
    return root


def restore_cli(*arguments: str) -> Result:
    return CliRunner().invoke(main, ["restore", "pool", *arguments])


def assert_identical(restored: Path, original: Path) -> None:
    """ProxyWhirl loads the same pool, and its status rows are the same, column for column."""
    mine, theirs = load(restored), load(original)
    assert len(theirs) == 3 * PROXIES_PER_DAY - 1
    assert any(proxy["password"] for proxy in theirs.values())
    assert any(proxy["total_checks"] == 0 for proxy in theirs.values())
    for url, proxy in theirs.items():
        assert mine[url] == proxy, url
    assert mine.keys() == theirs.keys()
    assert table(restored, "proxy_statuses", "proxy_url") == table(
        original, "proxy_statuses", "proxy_url"
    )
    assert restored.stat().st_mode & 0o777 == 0o600


def test_default_csv_gz_restores_the_identical_deployment(
    original: Path, exports: Path, tmp_path: Path
) -> None:
    manifest = ExportManifest.from_json(
        (folder(exports / "encrypted", "proxy_list") / "_manifest.json").read_bytes()
    )
    assert (manifest.format, manifest.compression) == ("csv", "gzip")
    empty = tmp_path / "restored"
    empty.mkdir()
    result = restore_cli(
        str(folder(exports / "encrypted", "proxy_list")),
        "--db",
        str(empty / "proxies.db"),
        "--history",
        HISTORY,
        "--events",
        str(exports / "plain" / "validation_events"),
    )
    assert result.exit_code == 0, result.output
    checks = len(table(original, "validation_results", "id"))
    assert f"{checks} validation result(s) from 3 validation_events partition(s)" in result.output
    assert "note:" not in result.output  # the whole history replays to the same statuses
    assert sorted(p.name for p in empty.iterdir()) == ["proxies.db"]
    assert_identical(empty / "proxies.db", original)
    assert table(empty / "proxies.db", "validation_results", "id") == table(
        original, "validation_results", "id"
    )

    (empty / "logs").mkdir()
    export_all(empty / "proxies.db", tmp_path / "again")
    again, before = data_files(tmp_path / "again"), data_files(exports / "plain")
    assert len(again) == 4
    assert again == before


def test_backup_job_json_restores_every_field(
    original: Path, exports: Path, tmp_path: Path
) -> None:
    diff = restore_pool(folder(exports / "backup", "proxy_list"), tmp_path / "proxies.db")
    assert diff.created
    assert len(diff.added) == 3 * PROXIES_PER_DAY - 1
    assert diff.history is None
    assert_identical(tmp_path / "proxies.db", original)
    # What ProxyWhirl writes: success_rate_7d is never set by 0.3.3.
    assert {row[10] for row in table(tmp_path / "proxies.db", "proxy_statuses", "1")} == {None}
    assert table(tmp_path / "proxies.db", "validation_results", "id") == []


def test_restore_in_a_real_process(original: Path, exports: Path, tmp_path: Path) -> None:
    command = Path(sys.executable).with_name("export-assets")
    completed = subprocess.run(
        [
            str(command),
            "restore",
            "pool",
            str(folder(exports / "encrypted", "proxy_list")),
            "--db",
            str(tmp_path / "proxies.db"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert f"restored into {tmp_path / 'proxies.db'} (a new ProxyWhirl database)" in (
        completed.stdout
    )
    assert_identical(tmp_path / "proxies.db", original)


FORMATS = [
    ("csv", "none"),
    ("csv", "zstd"),
    ("csv", "zip"),
    ("jsonl", "gzip"),
    ("jsonl", "none"),
    ("json", "zstd"),
    ("json", "zip"),
    ("parquet", "none"),
    ("xlsx", "none"),
]


@pytest.mark.parametrize(("fmt", "codec"), FORMATS)
def test_every_format_and_codec_round_trips(
    original: Path, tmp_path: Path, fmt: str, codec: str
) -> None:
    destination = tmp_path / "exports"
    export(
        original,
        destination,
        [proxy_list, validation_events],
        LAST,
        format=fmt,
        compression=codec,
        credentials="encrypt",
    )
    diff = restore_pool(
        folder(destination, "proxy_list"), tmp_path / "proxies.db", history=f"{LAST}..{LAST}"
    )
    restored = tmp_path / "proxies.db"
    last_day = [row for row in table(original, "validation_results", "id") if row[2] >= LAST]
    # One day of history cannot replay to the pool's statuses (written from the export):
    # restore says so.
    assert any("does not give the exported status" in note for note in diff.notes)
    if fmt != "xlsx":
        assert len(diff.notes) == 1
        assert_identical(restored, original)
        assert table(restored, "validation_results", "id") == last_day
        return
    # xlsx keeps milliseconds and 15-16 digits, and has no empty string: close, and said.
    assert any("xlsx keeps 15-16 significant digits" in note for note in diff.notes)
    mine, theirs = load(restored), load(original)
    assert mine.keys() == theirs.keys()
    for url, proxy in theirs.items():
        for name, value in proxy.items():
            assert _close(mine[url][name], value), (url, name)
    rows = table(restored, "validation_results", "id")
    assert [row[0] for row in rows] == [row[0] for row in last_day]
    for row, expected in zip(rows, last_day, strict=True):
        assert row[1] == expected[1]
        assert row[3] == expected[3]
        assert (row[6] or None) == (expected[6] or None)


def _close(value: Any, expected: Any) -> bool:
    if isinstance(expected, float):
        return isinstance(value, float) and abs(value - expected) <= 1e-12 * abs(expected)
    if isinstance(expected, datetime):
        return isinstance(value, datetime) and abs(value - expected) <= timedelta(milliseconds=1)
    return bool(value == expected)


# --- bad input: a clear error, and nothing written ------------------------------------


def copy_exports(exports: Path, tmp_path: Path, kind: str = "encrypted") -> Path:
    """A private copy of one destination, to damage."""
    target = tmp_path / "copy"
    shutil.copytree(exports / kind, target)
    shutil.copytree(exports / "plain" / "validation_events", target / "validation_events")
    return target


def fails(export_folder: Path, expected: str, tmp_path: Path, **options: Any) -> str:
    """Restore into an empty folder fails naming ``expected``; the folder stays empty."""
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    with pytest.raises(RestoreError) as error:
        restore_pool(export_folder, empty / "proxies.db", **options)
    assert expected in str(error.value), str(error.value)
    assert list(empty.iterdir()) == []
    result = restore_cli(
        str(export_folder),
        "--db",
        str(empty / "proxies.db"),
        *(["--history", options["history"]] if "history" in options else []),
    )
    assert result.exit_code == 1
    assert expected in result.output
    assert list(empty.iterdir()) == []
    return str(error.value)


def edit_manifest(partition: Path, **changes: Any) -> None:
    manifest = json.loads((partition / "_manifest.json").read_bytes())
    manifest.update(changes)
    (partition / "_manifest.json").write_text(json.dumps(manifest))


def test_wrong_export_key(exports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = Fernet.generate_key().decode()
    monkeypatch.setenv("EXPORT_ENCRYPTION_KEY", other)
    message = fails(
        folder(exports / "encrypted", "proxy_list"),
        "EXPORT_ENCRYPTION_KEY is not the key this export was encrypted with",
        tmp_path,
    )
    assert other not in message
    assert EXPORT_KEY not in message


def test_corrupt_data_file(exports: Path, tmp_path: Path) -> None:
    partition = folder(copy_exports(exports, tmp_path), "proxy_list")
    data = next(p for p in partition.iterdir() if p.name != "_manifest.json")
    damaged = bytearray(data.read_bytes())
    damaged[len(damaged) // 2] ^= 0x20
    data.write_bytes(bytes(damaged))
    fails(partition, "does not match its manifest", tmp_path)


def test_a_file_that_is_not_its_manifests(exports: Path, tmp_path: Path) -> None:
    # The bytes are intact (sha256 matches), but the manifest names other columns.
    partition = folder(copy_exports(exports, tmp_path), "proxy_list")
    manifest = json.loads((partition / "_manifest.json").read_bytes())
    columns = manifest["columns"]
    columns[1], columns[2] = columns[2], columns[1]
    edit_manifest(partition, columns=columns)
    fails(partition, "has the columns ['url', 'protocol', 'host'", tmp_path)


def test_row_count_mismatch(exports: Path, tmp_path: Path) -> None:
    partition = folder(copy_exports(exports, tmp_path), "proxy_list")
    edit_manifest(partition, total_rows=3 * PROXIES_PER_DAY)
    fails(partition, f"holds {3 * PROXIES_PER_DAY - 1} rows, its manifest says", tmp_path)


def test_nulls_in_a_column_the_manifest_says_has_none(exports: Path, tmp_path: Path) -> None:
    partition = folder(copy_exports(exports, tmp_path), "proxy_list")
    manifest = json.loads((partition / "_manifest.json").read_bytes())
    for column in manifest["columns"]:
        if column["name"] == "last_check_at":
            column["nullable"] = False
    edit_manifest(partition, columns=manifest["columns"])
    fails(partition, "column last_check_at holds", tmp_path)


def test_a_column_type_restore_does_not_know(exports: Path, tmp_path: Path) -> None:
    partition = folder(copy_exports(exports, tmp_path), "proxy_list")
    manifest = json.loads((partition / "_manifest.json").read_bytes())
    manifest["columns"][4]["type"] = "list<item: string>"
    edit_manifest(partition, columns=manifest["columns"])
    fails(partition, "records column 'country_code' as type 'list<item: string>'", tmp_path)


@pytest.mark.parametrize(
    ("cut", "expected"),
    [("compressed", "does not decompress as gzip"), ("plain", "does not parse as csv")],
)
def test_truncated_file_with_a_matching_manifest(
    exports: Path, tmp_path: Path, cut: str, expected: str
) -> None:
    # Even when someone "fixed" the manifest, a damaged file is refused, not half-read.
    partition = folder(copy_exports(exports, tmp_path), "proxy_list")
    data = next(p for p in partition.iterdir() if p.name != "_manifest.json")
    raw = data.read_bytes()
    if cut == "compressed":
        data.write_bytes(raw[:-300])
    else:
        data.write_bytes(gzip.compress(gzip.decompress(raw)[:-300], mtime=0))
    manifest = json.loads((partition / "_manifest.json").read_bytes())
    manifest["files"][0].update(
        bytes=data.stat().st_size, sha256=hashlib.sha256(data.read_bytes()).hexdigest()
    )
    edit_manifest(partition, files=manifest["files"])
    fails(partition, expected, tmp_path)


def test_history_with_a_missing_day(exports: Path, tmp_path: Path) -> None:
    copy = copy_exports(exports, tmp_path)
    shutil.rmtree(folder(copy, "validation_events", DAYS[1].isoformat()))
    fails(
        folder(copy, "proxy_list"),
        f"validation_events has no partition for {DAYS[1]}",
        tmp_path,
        history=HISTORY,
    )


def test_history_past_the_pools_day(exports: Path, tmp_path: Path) -> None:
    fails(
        folder(copy_exports(exports, tmp_path), "proxy_list"),
        "goes past the pool's day 2026-11-20",
        tmp_path,
        history="2026-11-19..2026-11-21",
    )


def test_history_that_is_not_a_range(exports: Path, tmp_path: Path) -> None:
    fails(
        folder(copy_exports(exports, tmp_path), "proxy_list"),
        "--history 'last week' is not a range of days",
        tmp_path,
        history="last week",
    )


def test_damaged_history_partition(exports: Path, tmp_path: Path) -> None:
    copy = copy_exports(exports, tmp_path)
    events = folder(copy, "validation_events", LAST)  # the last: no later manifest links it
    edit_manifest(events, total_rows=1)
    fails(folder(copy, "proxy_list"), "its manifest says 1", tmp_path, history=HISTORY)


def test_history_into_an_existing_database(original: Path, exports: Path, tmp_path: Path) -> None:
    """The same history is recognised; another one is refused, changing nothing."""
    target = tmp_path / "proxies.db"
    shutil.copy(original, target)
    target.chmod(0o644)
    arguments = [
        str(folder(exports / "encrypted", "proxy_list")),
        "--db",
        str(target),
        "--history",
        HISTORY,
        "--events",
        str(exports / "plain" / "validation_events"),
    ]
    result = restore_cli(*arguments)
    assert result.exit_code == 0, result.output
    checks = len(table(original, "validation_results", "id"))
    assert f"0 validation result(s) from 3 validation_events partition(s) ({checks} already" in (
        result.output
    )
    assert target.stat().st_mode & 0o777 == 0o644  # an existing file keeps its mode
    connection = sqlite3.connect(target)
    connection.execute("UPDATE validation_results SET is_valid = 1 - is_valid WHERE id = 5")
    connection.commit()
    connection.close()
    before = target.read_bytes()
    result = restore_cli(*arguments)
    assert result.exit_code == 1
    assert "validation_results already holds id 5 with other values" in result.output
    assert target.read_bytes() == before


def test_restore_pool_job_replays_history(original: Path, exports: Path, tmp_path: Path) -> None:
    from export_assets.defs.operations.restore import restore_pool_job

    result = restore_pool_job.execute_in_process(
        run_config={
            "ops": {
                "restore_pool_op": {
                    "config": {
                        "export": str(folder(exports / "encrypted", "proxy_list")),
                        "database": str(tmp_path / "proxies.db"),
                        "history": HISTORY,
                        "events": str(exports / "plain" / "validation_events"),
                    }
                }
            }
        },
    )
    assert result.success
    assert_identical(tmp_path / "proxies.db", original)
    assert table(tmp_path / "proxies.db", "validation_results", "id") == table(
        original, "validation_results", "id"
    )


def test_dry_run_proves_everything_and_writes_nothing(exports: Path, tmp_path: Path) -> None:
    result = restore_cli(
        str(folder(exports / "encrypted", "proxy_list")),
        "--db",
        str(tmp_path / "proxies.db"),
        "--history",
        HISTORY,
        "--events",
        str(exports / "plain" / "validation_events"),
        "--dry-run",
    )
    assert result.exit_code == 0, result.output
    assert f"would restore into {tmp_path / 'proxies.db'} (a new ProxyWhirl database)" in (
        result.output
    )
    assert f"{3 * PROXIES_PER_DAY - 1} added" in result.output
    assert list(tmp_path.iterdir()) == []


def test_history_that_starts_late_is_said(original: Path, exports: Path, tmp_path: Path) -> None:
    result = restore_cli(
        str(folder(exports / "encrypted", "proxy_list")),
        "--db",
        str(tmp_path / "proxies.db"),
        "--history",
        f"{DAYS[1]}..{LAST}",
        "--events",
        str(exports / "plain" / "validation_events"),
    )
    assert result.exit_code == 0, result.output
    assert "note: the restored history, replayed, does not give the exported status of" in (
        result.output
    )
    assert "--history should start at the first day validation_events was exported" in (
        result.output
    )
    # The statuses written are the export's all the same.
    assert_identical(tmp_path / "proxies.db", original)


def test_a_txt_export_is_refused(original: Path, tmp_path: Path) -> None:
    export(original, tmp_path / "txt", [proxy_list], LAST, format="txt")
    message = fails(
        folder(tmp_path / "txt", "proxy_list"),
        "is a txt export, which restore cannot read back",
        tmp_path,
    )
    assert "(it reads csv, jsonl, json, parquet, xlsx)" in message
    assert "a txt export holds the URLs only" in message
