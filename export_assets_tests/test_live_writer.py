"""Exports never stall a live ProxyWhirl, and still export exactly their snapshot.

A real writer process (``live_writer``: 50-row ``BEGIN IMMEDIATE`` transactions with the
``sqlite3`` module's default 5 s busy timeout, as ProxyWhirl's SQLAlchemy does) inserts
validation results continuously into the day being exported, in ProxyWhirl's default
rollback-journal mode (``delete``) and in WAL mode. Meanwhile ``validation_events`` of that
open day and of the closed day before, ``proxy_list`` and ``proxy_metrics`` are
materialized through Dagster. The writer must see no ``database is locked`` error, no
transaction over 1 s, and must have committed while the exports ran; every export must hold
exactly the rows of its day up to the ``validation_results_max_id`` its manifest records,
read back with gzip + csv and an independent sqlite3 reader.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from dagster import AssetsDefinition, DagsterInstance, materialize
from pydantic import ValidationError

from export_assets.defs.exports.proxy_list import proxy_list
from export_assets.defs.exports.proxy_metrics import proxy_metrics
from export_assets.defs.exports.validation_events import validation_events
from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.lib.reports.window import week_figures
from export_assets.lib.sample import write_sample_deployment
from export_assets.lib.source import SourceSnapshot, metrics
from export_assets.lib.source import validations as v
from export_assets.lib.source.changes import pool_changes
from export_assets.lib.source.metrics import RankPicker
from export_assets_tests.conftest import export_resources

OPEN_DAY = date(2026, 11, 20)  # the day the writer writes to
CLOSED_DAY = OPEN_DAY - timedelta(days=1)
DAY_ROWS = 200_000  # enough that an export of the day takes about a second or more
REPO = Path(__file__).resolve().parents[1]


# DAY_ROWS checks of one day, generated inside SQLite (a Python tuple per row would be
# the slowest part of the test): times from 00:00 to 19:00 (the writer writes from 20:00),
# 80 % successes with a latency, failures with a timeout, proxies in turn.
_GENERATE_DAY = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :rows - 1)
INSERT INTO validation_results
    (proxy_url, validated_at, is_valid, response_time_ms, error_type, error_message)
SELECT url, validated_at, valid,
       CASE WHEN valid THEN 20 + (i * 7919 % 298000) / 100.0 END,
       CASE WHEN valid THEN NULL ELSE 'timeout' END,
       CASE WHEN valid THEN NULL ELSE printf('timed out after %d s', i % 30) END
FROM (SELECT i, (i * 2654435761) % 5 <> 0 AS valid,
             printf('%s %02d:%02d:%02d.%06d', :day, s / 3600, s / 60 % 60, s % 60, i % 1000000)
                 AS validated_at
      FROM (SELECT i, i * 19 * 3600 / :rows AS s FROM n))
JOIN urls ON urls.k = i % (SELECT count(*) FROM urls)
"""


@pytest.fixture(scope="module")
def busy_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sample deployment with DAY_ROWS more checks on each of the two days."""
    deployment = write_sample_deployment(
        tmp_path_factory.mktemp("live") / "proxywhirl",
        proxies=300,
        days=3,
        end_date=OPEN_DAY,
        validations_per_day=200,
        seed=5,
    )
    database = deployment.database
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        connection.execute("CREATE TEMP TABLE urls (k INTEGER PRIMARY KEY, url TEXT)")
        connection.execute(
            "INSERT INTO urls SELECT row_number() OVER (ORDER BY url) - 1, url"
            " FROM proxy_identities"
        )
        for day in (CLOSED_DAY, OPEN_DAY):
            connection.execute(_GENERATE_DAY, {"rows": DAY_ROWS, "day": day.isoformat()})
    connection.close()
    return database


class Writer:
    """The live_writer process; ``stop()`` returns its statistics."""

    def __init__(self, database: Path, stats: Path) -> None:
        self.stats = stats
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "export_assets_tests.live_writer",
                str(database),
                OPEN_DAY.isoformat(),
                str(stats),
            ],
            cwd=REPO,
        )
        deadline = time.monotonic() + 30
        while not stats.with_suffix(".ready").exists():
            assert self.process.poll() is None, "the writer died before its first commit"
            assert time.monotonic() < deadline, "the writer never committed"
            time.sleep(0.01)

    def stop(self) -> dict[str, Any]:
        self.stats.with_suffix(".stop").touch()
        assert self.process.wait(timeout=30) == 0
        result: dict[str, Any] = json.loads(self.stats.read_text())
        return result

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# ProxyWhirl's default (rollback journal) in make test; WAL as well in make test-slow.
@pytest.fixture(params=["delete", pytest.param("wal", marks=pytest.mark.slow)])
def live(request: pytest.FixtureRequest, busy_database: Path, tmp_path: Path) -> Path:
    """A copy of the busy database in the journal mode ProxyWhirl runs it in."""
    database = tmp_path / "data" / "proxies.db"
    database.parent.mkdir()
    shutil.copy(busy_database, database)
    with sqlite3.connect(database) as connection:
        mode = connection.execute(f"PRAGMA journal_mode = {request.param}").fetchone()[0]
        assert mode == request.param
    connection.close()
    return database


def _csv_rows(exports: Path, asset: str, day: date) -> tuple[list[dict[str, str]], dict[str, Any]]:
    folder = exports / asset / f"dt={day.isoformat()}"
    manifest = json.loads((folder / "_manifest.json").read_text())
    data = gzip.decompress((folder / f"{asset}-{day.isoformat()}.csv.gz").read_bytes())
    return list(csv.DictReader(io.StringIO(data.decode()))), manifest


def _day_ids(database: Path, day: date, up_to: int) -> list[int]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        ids = [
            row[0]
            for row in connection.execute(
                "SELECT id FROM validation_results WHERE validated_at >= ? AND validated_at < ?"
                " AND id <= ? ORDER BY id",
                (day.isoformat(), (day + timedelta(days=1)).isoformat(), up_to),
            )
        ]
    connection.close()
    return ids


def _export_under_writer(
    database: Path,
    tmp_path: Path,
    instance: DagsterInstance,
    runs: list[tuple[list[AssetsDefinition], date]],
) -> tuple[Path, dict[str, Any]]:
    """Materialize ``runs`` while the writer writes; the exports folder and what the writer
    saw, after checking it saw no error, no slow transaction, and wrote meanwhile."""
    exports = tmp_path / "exports"
    resources = export_resources(database, exports)
    writer = Writer(database, tmp_path / "writer.json")
    try:
        started = time.time()
        for assets, day in runs:
            result = materialize(
                assets, partition_key=day.isoformat(), instance=instance, resources=resources
            )
            assert result.success
        finished = time.time()
        stats = writer.stop()
    finally:
        writer.kill()
    assert stats["locked"] == 0, stats["locked"]
    assert stats["other_errors"] == 0
    assert stats["slowest_seconds"] < 1.0, stats["slowest_seconds"]
    during = [t for t in stats["commit_times"] if started < t < finished]
    assert len(during) > 10, "the writer did not commit while the exports ran"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
    connection.close()
    assert mode in {"delete", "wal"}  # the exporter never changes it
    return exports, stats


def _assert_events_are_the_snapshot(exports: Path, database: Path, day: date) -> None:
    rows, manifest = _csv_rows(exports, "validation_events", day)
    watermark = manifest["source"]["validation_results_max_id"]
    expected = _day_ids(database, day, watermark)
    assert [int(row["id"]) for row in rows] == expected
    assert manifest["total_rows"] == len(expected) >= DAY_ROWS


def test_validation_events_of_the_open_day_never_stall_a_live_writer(
    live: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports, _ = _export_under_writer(live, tmp_path, instance, [([validation_events], OPEN_DAY)])
    _assert_events_are_the_snapshot(exports, live, OPEN_DAY)
    # The export holds rows the writer committed before it began, and none after.
    _, manifest = _csv_rows(exports, "validation_events", OPEN_DAY)
    assert manifest["source"]["validation_results_max_id"] > 2 * DAY_ROWS + 600


@pytest.mark.slow
def test_every_source_read_leaves_a_live_writer_alone(
    live: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    runs = [
        ([validation_events, proxy_list, proxy_metrics], OPEN_DAY),
        ([validation_events], CLOSED_DAY),
    ]
    exports, _ = _export_under_writer(live, tmp_path, instance, runs)
    for day in (OPEN_DAY, CLOSED_DAY):
        _assert_events_are_the_snapshot(exports, live, day)

    metrics, manifest = _csv_rows(exports, "proxy_metrics", OPEN_DAY)
    pool = next(row for row in metrics if row["scope"] == "pool")
    watermark = manifest["source"]["validation_results_max_id"]
    assert int(pool["checks"]) == len(_day_ids(live, OPEN_DAY, watermark))

    pool_rows, manifest = _csv_rows(exports, "proxy_list", OPEN_DAY)
    assert len(pool_rows) == 300
    watermark = manifest["source"]["validation_results_max_id"]
    with sqlite3.connect(f"file:{live}?mode=ro", uri=True) as connection:
        # Checks from each proxy's add on (ProxyWhirl counts no earlier one); the writer does
        # not update proxy_statuses, so no seed check counts.
        total = connection.execute(
            "SELECT count(*) FROM validation_results v JOIN proxy_identities i"
            " ON i.url = v.proxy_url WHERE v.id <= ? AND v.validated_at < ?"
            " AND replace(v.validated_at, 'T', ' ') >= replace(i.discovered_at, 'T', ' ')",
            (watermark, (OPEN_DAY + timedelta(days=1)).isoformat()),
        ).fetchone()[0]
    connection.close()
    assert sum(int(row["total_checks"]) for row in pool_rows) == total


# --- short reads give exactly what one read gives --------------------------------------


@pytest.fixture(scope="module")
def untidy_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sample deployment with what real histories have: ids out of time order, errors on
    successful checks, an error type ProxyWhirl does not list, deleted proxies."""
    database = write_sample_deployment(
        tmp_path_factory.mktemp("untidy") / "proxywhirl",
        proxies=60,
        days=9,
        end_date=OPEN_DAY,
        validations_per_day=400,
        seed=3,
    ).database
    with sqlite3.connect(database) as connection:
        connection.execute(
            "UPDATE validation_results SET validated_at = ? WHERE id IN (SELECT id FROM"
            " validation_results WHERE validated_at >= ? ORDER BY id LIMIT 7)",
            (f"{CLOSED_DAY.isoformat()} 23:59:59.000000", OPEN_DAY.isoformat()),
        )
        connection.execute(
            "UPDATE validation_results SET error_type = 'timeout' WHERE id % 17 = 0 AND is_valid"
        )
        connection.execute(
            "UPDATE validation_results SET error_type = 'weird' WHERE id % 23 = 0 AND is_valid"
        )
        connection.execute(
            "DELETE FROM proxy_identities WHERE url IN"
            " (SELECT url FROM proxy_identities ORDER BY url LIMIT 4)"
        )
    connection.close()
    return database


def _everything(database: Path, chunk_rows: int) -> dict[str, Any]:
    """Every source output for the last days, read with ``chunk_rows``-row reads."""
    found: dict[str, Any] = {}
    with SourceSnapshot(
        database, busy_timeout_ms=5000, batch_rows=97, chunk_rows=chunk_rows
    ) as snapshot:
        for day in (OPEN_DAY - timedelta(days=n) for n in range(3)):
            for name, filters in (
                ("all", v.NO_FILTERS),
                ("failed", v.ValidationFilters(is_valid=False)),
                ("timeouts", v.ValidationFilters(error_types=("timeout",))),
            ):
                ids = v.validation_id_range(snapshot, day, filters)
                batches = list(v.validation_events(snapshot, day, ids, filters))
                found[f"events {day} {name}"] = (
                    ids,
                    [b.num_rows for b in batches],
                    pa.Table.from_batches(batches).to_pylist(),
                )
            ids = v.validation_id_range(snapshot, day)
            day_metrics = metrics.proxy_metrics(snapshot, day, ids)
            found[f"metrics {day}"] = [b.to_pylist() for b in day_metrics]
            found[f"pool {day}"] = [b.to_pylist() for b in snapshot.proxy_pool(day)]
            found[f"watermark {day}"] = snapshot.validation_watermark(day)
            changes = pool_changes(snapshot, day)
            found[f"changes {day}"] = (changes.counts, [b.to_pylist() for b in changes.batches()])
            changes.close()
        week = week_figures(snapshot, OPEN_DAY, min_checks=2)
        found["week"] = (repr(week), week.proxies)
    return found


def test_short_reads_give_exactly_what_one_read_gives(untidy_database: Path) -> None:
    whole = _everything(untidy_database, chunk_rows=10_000_000)
    chunked = _everything(untidy_database, chunk_rows=64)
    assert whole.keys() == chunked.keys()
    for key, value in whole.items():
        assert chunked[key] == value, key
    assert len(whole[f"events {OPEN_DAY} all"][1]) > 1  # the day has rows, in several batches


def test_rank_picker_finds_the_values_a_sort_finds() -> None:
    numbers = np.random.default_rng(7)
    values = np.concatenate(
        [
            numbers.lognormal(5, 1.5, 20_000),
            np.round(numbers.uniform(-5, 5, 5_000)),
            np.full(3_000, 250.0),
            [0.0, -0.0, 1e-300, 1e300, -1e300],
        ]
    )
    groups = 40
    codes = numbers.integers(0, groups - 2, len(values))  # the last two groups stay empty
    codes[:1] = groups - 3  # a group that may hold one value only
    wanted = np.zeros((groups, 4), np.int64)  # per group: first, median, p95 and last ranks
    members = [np.sort(values[codes == g]) for g in range(groups)]
    for g, kept in enumerate(members):
        n = len(kept)
        wanted[g] = [0, n // 2, (n - 1) * 95 // 100, n - 1] if n else [-1] * 4
    picker = RankPicker(groups)
    for start in range(0, len(values), 4096):  # any order, by pieces
        picker.count(codes[start : start + 4096][None, :], values[start : start + 4096])
    assert picker.totals().tolist() == [len(kept) for kept in members]
    picker.want(wanted)
    for start in range(len(values) - 4096, -4096, -4096):
        piece = slice(max(start, 0), start + 4096)
        picker.collect(codes[piece][None, :], values[piece])
    picked = picker.picked()
    for g, kept in enumerate(members):
        if len(kept):
            assert picked[g].tolist() == kept[wanted[g]].tolist()
        else:
            assert np.isnan(picked[g]).all()


def test_a_chunk_too_small_to_read_well_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError, match=r"chunk_rows\n.*greater than or equal to 64"):
        ProxyWhirlSource(chunk_rows=10)
