"""proxy_list and proxy_changes against the real ProxyWhirl 0.3.3: every field of every proxy.

The deployments are written through the library's own API (``proxywhirl_deployment``); the
truth of each day is what the library itself wrote to ``proxy_statuses`` and returned from
``SQLiteStorage.load()`` at the end of that day. The exports are materialized through
Dagster and read back with pyarrow.

What ProxyWhirl keeps no trace of is left out of the comparison, and the test says so: a
proxy deleted after day D had its identity deleted with it, so no rebuilt pool of D can
hold it (the pools of D hold exactly the proxies of the library's D that still exist, as
that same incarnation). ``checks_7d`` and ``observed_success_rate_7d`` are the exporter's
own 7-day figures; ``success_rate_7d`` is compared with ProxyWhirl's column, which 0.3.3
never sets (asserted below).
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import time_machine
from cryptography.fernet import Fernet
from dagster import DagsterInstance, materialize

from export_assets.defs.exports import proxy_list
from export_assets.defs.exports.proxy_changes import proxy_changes
from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.lib.sample import SampleDeployment
from export_assets.lib.source import POOL_SCHEMA
from export_assets_tests.conftest import configured, export_resources
from export_assets_tests.proxywhirl_deployment import LibraryDeployment, write_library_deployment

EXPORT_KEY = Fernet.generate_key().decode()
END = date(2026, 11, 10)

# The pool's fields, as ProxyWhirl's own columns hold them.
_IDENTITY_FIELDS = (
    "url",
    "protocol",
    "host",
    "port",
    "country_code",
    "country_name",
    "region",
    "city",
    "latitude",
    "longitude",
    "asn",
    "isp_name",
    "is_residential",
    "is_datacenter",
    "source",
    "source_url",
)
_STATUS_FIELDS = (
    "health_status",
    "consecutive_successes",
    "consecutive_failures",
    "total_checks",
    "total_successes",
    "avg_response_time_ms",
    "success_rate_7d",
)
_TIME_FIELDS = ("discovered_at", "last_check_at", "last_success_at", "last_failure_at")
_LOADED_FIELDS = (
    "health_status",
    "total_checks",
    "total_successes",
    "avg_response_time_ms",
    "last_success_at",
    "last_failure_at",
    "discovered_at",
    "username",
    "password",
)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> LibraryDeployment:
    return write_library_deployment(
        tmp_path_factory.mktemp("library"), proxies=40, days=3, end=END, seed=3
    )


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("EXPORT_ENCRYPTION_KEY", EXPORT_KEY)
    return monkeypatch


def _utc(text: Any) -> datetime | None:
    if text is None:
        return None
    value = text if isinstance(text, datetime) else datetime.fromisoformat(str(text))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _export(
    deployment: LibraryDeployment,
    exports: Path,
    instance: DagsterInstance,
    asset: Any,
    day: date,
    *,
    default_format: bool = False,
) -> list[dict[str, Any]]:
    """Materialize one partition (parquet, or the default csv.gz read back typed)."""
    name = asset.key.path[-1]
    config: dict[str, Any] = {} if default_format else {"format": "parquet"}
    if name == "proxy_list":
        config["credentials"] = "encrypt"
    result = materialize(
        [configured(asset, config)],
        partition_key=day.isoformat(),
        instance=instance,
        resources=export_resources(deployment.database, exports),
    )
    assert result.success
    folder = exports / name / f"dt={day.isoformat()}"
    if default_format:
        schema = pa.schema(
            [*POOL_SCHEMA, pa.field("username", pa.string()), pa.field("password", pa.string())]
        )
        options = pa_csv.ConvertOptions(
            column_types=schema, strings_can_be_null=True, quoted_strings_can_be_null=False
        )
        table = pa_csv.read_csv(
            next(folder.glob(f"{name}-*.csv.gz")), convert_options=options
        )  # pyarrow opens .gz itself
        return list(table.to_pylist())
    rows: list[dict[str, Any]] = pq.read_table(next(folder.glob(f"{name}-*.parquet"))).to_pylist()
    return rows


def _still_there(deployment: LibraryDeployment, day: date) -> dict[str, dict[str, Any]]:
    """The library's pool of ``day``, less the proxies deleted (or re-added) since."""
    last = deployment.statuses[deployment.days[-1]]
    return {
        url: row
        for url, row in deployment.statuses[day].items()
        if url in last and last[url]["discovered_at"] == row["discovered_at"]
    }


def _mismatches(
    deployment: LibraryDeployment, day: date, exported: list[dict[str, Any]]
) -> list[str]:
    """Every field of every proxy that differs from what the library wrote and loads."""
    truth = _still_there(deployment, day)
    loaded = deployment.loaded[day]
    fernet = Fernet(EXPORT_KEY)
    found = {row["url"]: row for row in exported}
    problems = [f"{url}: not exported" for url in sorted(set(truth) - set(found))]
    problems += [f"{url}: exported, not in the pool" for url in sorted(set(found) - set(truth))]
    for url in sorted(set(truth) & set(found)):
        row, wrote, load = found[url], truth[url], loaded[url]
        expected: dict[str, Any] = {name: wrote[name] for name in _IDENTITY_FIELDS}
        expected["is_residential"] = bool(wrote["is_residential"])
        expected["is_datacenter"] = bool(wrote["is_datacenter"])
        expected.update({name: wrote[name] for name in _STATUS_FIELDS})
        expected.update({name: _utc(wrote[name]) for name in _TIME_FIELDS})
        checks = wrote["total_checks"]
        expected["success_rate"] = wrote["total_successes"] / checks if checks else None
        clear = {
            key: None if row[key] is None else fernet.decrypt(row[key].encode()).decode()
            for key in ("username", "password")
            if key in row
        }
        for name, value in expected.items():
            if row[name] != value:
                problems.append(f"{url}: {name} exported {row[name]!r}, ProxyWhirl {value!r}")
        # What the library's own load() returns agrees with its rows and with the export.
        for name in _LOADED_FIELDS:
            if name in ("username", "password") and name not in clear:
                continue  # an export without credentials (proxy_changes)
            mine = clear[name] if name in clear else row[name]
            theirs = _utc(load[name]) if name in _TIME_FIELDS else load[name]
            if mine != theirs:
                problems.append(f"{url}: {name} exported {mine!r}, load() {theirs!r}")
    return problems


def test_the_plan_has_every_case_proxywhirl_does_not_record(small: LibraryDeployment) -> None:
    last = small.statuses[small.days[-1]]
    early = [url for url in small.checked_before_add if url in last]
    assert early
    assert small.seeded
    assert small.deleted
    assert small.readded
    assert small.credentialed
    # Checks before the add are in the history but not in ProxyWhirl's counts.
    assert any(last[url]["total_checks"] < _history_rows(small, url) for url in early)
    assert all(last[url]["success_rate_7d"] is None for url in last)  # never written by 0.3.3
    assert any(small.loaded[small.days[-1]][url]["password"] for url in small.credentialed)


def _history_rows(deployment: LibraryDeployment, url: str) -> int:
    connection = sqlite3.connect(deployment.database)
    try:
        row = connection.execute(
            "SELECT count(*) FROM validation_results WHERE proxy_url = ?", (url,)
        ).fetchone()
    finally:
        connection.close()
    return int(row[0])


def test_proxy_list_equals_proxywhirl_for_every_proxy_and_field_every_day(
    small: LibraryDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    keys: pytest.MonkeyPatch,
) -> None:
    keys.setenv("PROXYWHIRL_CACHE_ENCRYPTION_KEY", small.cache_key)
    for day in small.days:
        exported = _export(small, tmp_path, instance, proxy_list, day)
        assert [row["url"] for row in exported] == sorted(_still_there(small, day))
        assert _mismatches(small, day, exported) == []
    # The last day is the whole of the library's pool, nothing left out; in the default
    # format (csv.gz) too.
    assert set(_still_there(small, small.days[-1])) == set(small.statuses[small.days[-1]])
    last = small.days[-1]
    exported = _export(small, tmp_path / "csv", instance, proxy_list, last, default_format=True)
    assert len(exported) == len(small.statuses[last])
    assert _mismatches(small, last, exported) == []


def test_proxy_changes_follow_proxywhirls_pools(
    small: LibraryDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    keys: pytest.MonkeyPatch,
) -> None:
    keys.setenv("PROXYWHIRL_CACHE_ENCRYPTION_KEY", small.cache_key)
    for before, day in zip(small.days, small.days[1:], strict=False):
        old, new = _still_there(small, before), _still_there(small, day)
        changes = _export(small, tmp_path, instance, proxy_changes, day)
        kept = [row for row in changes if row["change"] != "removed"]
        expected = dict.fromkeys(set(new) - set(old), "added")
        expected |= {
            url: "status_changed"
            for url in set(new) & set(old)
            if new[url]["health_status"] != old[url]["health_status"]
        }
        assert {row["url"]: row["change"] for row in kept} == expected
        for row in kept:
            assert row["status_to"] == new[row["url"]]["health_status"]
            if row["change"] == "status_changed":
                assert row["status_from"] == old[row["url"]]["health_status"]
        pool_fields = [{k: row[k] for k in POOL_SCHEMA.names} for row in kept]
        # Only the changed proxies are exported: every one of them exactly as ProxyWhirl has it.
        problems = [
            problem
            for problem in _mismatches(small, day, pool_fields)
            if "not exported" not in problem
        ]
        assert problems == []
        # A removal is only ever a proxy ProxyWhirl deleted.
        assert {row["url"] for row in changes if row["change"] == "removed"} <= small.deleted


def test_checks_before_the_add_are_kept_in_history_not_counted(
    small: LibraryDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
    keys: pytest.MonkeyPatch,
) -> None:
    keys.setenv("PROXYWHIRL_CACHE_ENCRYPTION_KEY", small.cache_key)
    last = small.days[-1]
    rows = {row["url"]: row for row in _export(small, tmp_path, instance, proxy_list, last)}
    early = sorted(url for url in small.checked_before_add if url in rows)
    assert early
    for url in early:
        assert rows[url]["total_checks"] == small.statuses[last][url]["total_checks"]
        assert rows[url]["total_checks"] < _history_rows(small, url)
    seeded = sorted(url for url in small.seeded if url in rows)
    assert seeded
    for url in seeded:  # the seed check counts, though no history row records it
        assert rows[url]["total_checks"] == small.statuses[last][url]["total_checks"]


@pytest.mark.slow
def test_a_400_proxy_14_day_deployment_is_exact(
    tmp_path: Path, instance: DagsterInstance, keys: pytest.MonkeyPatch
) -> None:
    big = write_library_deployment(tmp_path / "library", proxies=400, days=14, end=END, seed=7)
    keys.setenv("PROXYWHIRL_CACHE_ENCRYPTION_KEY", big.cache_key)
    for day in (big.days[0], big.days[6], big.days[-2], big.days[-1]):
        exported = _export(big, tmp_path / "exports", instance, proxy_list, day)
        assert _mismatches(big, day, exported) == []
    assert len(big.statuses[big.days[-1]]) > 300


def test_credentials_round_trip_through_the_export_key(small: LibraryDeployment) -> None:
    """The library stored them encrypted under its key; load() gives them back in clear."""
    last = small.statuses[small.days[-1]]
    fernet = Fernet(small.cache_key)
    for url in small.credentialed & set(last):
        stored = last[url]["password"]
        assert stored.startswith("encrypted:")
        clear = fernet.decrypt(base64.b64decode(stored[len("encrypted:") :])).decode()
        assert clear == small.loaded[small.days[-1]][url]["password"]


def test_deployment_days_end_on_the_requested_day(small: LibraryDeployment) -> None:
    assert small.days == [END - timedelta(days=2), END - timedelta(days=1), END]


def test_the_sample_deployment_rebuilds_to_its_own_status_table(
    sample_deployment: SampleDeployment,
) -> None:
    """``sample-data`` writes statuses by ProxyWhirl's rules (checks before the add, seed
    checks, a status per proxy): the last day's pool is its status table, field by field."""
    with sqlite3.connect(f"file:{sample_deployment.database}?mode=ro", uri=True) as connection:
        connection.row_factory = sqlite3.Row
        statuses = {
            row["proxy_url"]: dict(row)
            for row in connection.execute("SELECT * FROM proxy_statuses")
        }
        early = connection.execute(
            "SELECT count(DISTINCT v.proxy_url) FROM validation_results v JOIN proxy_identities"
            " i ON i.url = v.proxy_url WHERE v.validated_at < replace(i.discovered_at, 'T', ' ')"
        ).fetchone()[0]
    connection.close()
    assert early >= 1
    source = ProxyWhirlSource(database=str(sample_deployment.database))
    with source.open_snapshot() as snapshot:
        batches = list(snapshot.proxy_pool(sample_deployment.last_day + timedelta(days=1)))
    pool = {row["url"]: row for batch in batches for row in batch.to_pylist()}
    assert set(pool) == set(statuses)
    problems = []
    for url, status in statuses.items():
        row = pool[url]
        for name in _STATUS_FIELDS:
            if row[name] != status[name]:
                problems.append(f"{url}: {name} {row[name]!r} != {status[name]!r}")
        for name in ("last_check_at", "last_success_at", "last_failure_at"):
            if row[name] != _utc(status[name]):
                problems.append(f"{url}: {name} {row[name]!r} != {status[name]!r}")
    assert problems == []


def test_seed_times_on_a_ticking_clock(tmp_path: Path) -> None:
    """add_proxies_batch(validated=True) stamps the seed when the batch starts, each
    discovered_at a little later. The status keeps the seed's time until a later check (or
    success) replaces it; once both are replaced, the seed is dated by discovered_at."""
    urls = [f"http://45.9.9.{n}:8080" for n in (1, 2, 3)]
    database = tmp_path / "proxies.db"
    seeded_at = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)

    async def write() -> dict[str, dict[str, Any]]:
        from proxywhirl.models import Proxy
        from proxywhirl.storage import SQLiteStorage

        storage = SQLiteStorage(database)
        with time_machine.travel(seeded_at, tick=True):
            await storage.initialize()
            await storage.add_proxies_batch(
                [Proxy(url=url, average_response_time_ms=250.125) for url in urls], validated=True
            )
        with time_machine.travel(datetime(2026, 11, 2, 9, 0, tzinfo=UTC), tick=False) as clock:
            await storage.record_validation(urls[1], False, error_type="timeout")
            clock.shift(60)
            await storage.record_validation(urls[2], True, 120.0)
        await storage.close()
        connection = sqlite3.connect(database)
        connection.row_factory = sqlite3.Row
        rows = connection.execute(
            "SELECT * FROM proxy_identities i JOIN proxy_statuses s ON s.proxy_url = i.url"
        ).fetchall()
        connection.close()
        return {row["url"]: dict(row) for row in rows}

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROXYWHIRL_CACHE_ENCRYPTION_KEY", Fernet.generate_key().decode())
        truth = asyncio.run(write())
    source = ProxyWhirlSource(database=str(database))
    with source.open_snapshot() as snapshot:
        first = {r["url"]: r for b in snapshot.proxy_pool(date(2026, 11, 2)) for r in b.to_pylist()}
        last = {r["url"]: r for b in snapshot.proxy_pool(date(2026, 11, 3)) for r in b.to_pylist()}
    for url, row in last.items():  # the last day: exactly the status table
        for name in ("last_check_at", "last_success_at", "last_failure_at"):
            assert row[name] == _utc(truth[url][name]), (url, name)
        for name in _STATUS_FIELDS:
            assert row[name] == truth[url][name], (url, name)
    seed = {url: datetime.fromisoformat(truth[url]["discovered_at"] + "+00:00") for url in urls}
    kept = _utc(truth[urls[0]]["last_check_at"])
    assert kept is not None
    assert kept < seed[urls[0]]  # the clock ticked between the batch's start and the add
    # Never checked again, or only failed since: the seed's own time, on every day.
    assert first[urls[0]]["last_check_at"] == kept
    assert first[urls[1]]["last_success_at"] == _utc(truth[urls[1]]["last_success_at"])
    assert first[urls[1]]["last_check_at"] == first[urls[1]]["last_success_at"]
    # Succeeded since: the seed's time is gone from the database; discovered_at stands in.
    late = first[urls[2]]["last_check_at"]
    assert late == seed[urls[2]]
    assert timedelta(0) <= late - seeded_at < timedelta(seconds=1)
