"""Exports against a live writer: export time, and what the writer suffers meanwhile.

Not wired into ``bench/run.py`` (it needs a big database and minutes). Usage::

    .venv/bin/export-assets sample-data --out /tmp/big --proxies 5000 --days 3 \\
        --validations-per-day 1000000 --end-date 2026-11-25
    .venv/bin/python bench/live_writer.py /tmp/big/proxies.db 2026-11-25 \\
        [--modes delete,wal] [--assets validation_events,proxy_metrics,proxy_list]

For each journal mode it copies the database (the copy is switched to that mode, as a
ProxyWhirl configured so would have it), starts a writer process that inserts 50-row
``BEGIN IMMEDIATE`` transactions into the day with ``sqlite3``'s default 5 s busy timeout,
materializes the assets for the day through Dagster, stops the writer and prints one row:
export seconds, the writer's commits during the export, its ``database is locked``
errors, its slowest and 99th-percentile transaction.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from dagster import AssetsDefinition, materialize

from export_assets.defs.exports.proxy_list import proxy_list
from export_assets.defs.exports.proxy_metrics import proxy_metrics
from export_assets.defs.exports.validation_events import validation_events
from export_assets.defs.resources.io_manager import ExportIOManager
from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.defs.resources.store import ExportStore

ASSETS: dict[str, AssetsDefinition] = {
    "validation_events": validation_events,
    "proxy_metrics": proxy_metrics,
    "proxy_list": proxy_list,
}
REPO = Path(__file__).resolve().parents[1]


def _writer(database: Path, day: date, stats: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        [
            sys.executable,
            "-m",
            "export_assets_tests.live_writer",
            str(database),
            day.isoformat(),
            str(stats),
        ],
        cwd=REPO,
    )
    while not stats.with_suffix(".ready").exists():
        if process.poll() is not None:
            raise SystemExit("the writer died before its first commit")
        time.sleep(0.01)
    return process


def run_mode(
    source: Path, day: date, mode: str, assets: list[str], work: Path
) -> dict[str, object]:
    """Export ``assets`` of ``day`` from a copy of ``source`` in ``mode`` under a writer."""
    database = work / mode / "proxies.db"
    database.parent.mkdir(parents=True)
    shutil.copy(source, database)
    with sqlite3.connect(database) as connection:
        connection.execute(f"PRAGMA journal_mode = {mode}")
    connection.close()
    stats = work / mode / "writer.json"
    writer = _writer(database, day, stats)
    store = ExportStore(destination=str(work / mode / "exports"))
    resources = {
        "proxywhirl": ProxyWhirlSource(database=str(database)),
        "export_store": store,
        "io_manager": ExportIOManager(store=store),
    }
    try:
        time.sleep(3.0)  # the writer alone: its slowest transaction without an export
        started = time.time()
        result = materialize(
            [ASSETS[name] for name in assets],
            partition_key=day.isoformat(),
            resources=resources,
            raise_on_error=False,
        )
        finished = time.time()
        time.sleep(0.5)
    finally:
        stats.with_suffix(".stop").touch()
        writer.wait(timeout=60)
    facts = json.loads(stats.read_text())
    during = [t for t in facts["commit_times"] if started <= t <= finished]
    alone = [took for at, took in facts["transactions"] if at < started - 0.5]
    exporting = [took for at, took in facts["transactions"] if started <= at <= finished]
    return {
        "mode": mode,
        "success": result.success,
        "export_s": round(finished - started, 2),
        "commits_during": len(during),
        "locked": facts["locked"],
        "other_errors": facts["other_errors"],
        "slowest_txn_s": round(max(exporting, default=0.0), 3),
        "p99_txn_s": round(sorted(exporting)[int(0.99 * (len(exporting) - 1))], 3)
        if exporting
        else 0.0,
        "slowest_txn_alone_s": round(max(alone, default=0.0), 3),
        "largest_gap_s": round(max((b - a for a, b in itertools.pairwise(during)), default=0.0), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database", type=Path)
    parser.add_argument("day", type=date.fromisoformat)
    parser.add_argument("--modes", default="delete,wal")
    parser.add_argument("--assets", default="validation_events")
    arguments = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="live-writer-") as work:
        for mode in arguments.modes.split(","):
            rows.append(
                run_mode(
                    arguments.database,
                    arguments.day,
                    mode,
                    arguments.assets.split(","),
                    Path(work),
                )
            )
            print(json.dumps(rows[-1]), flush=True)
    names = list(rows[0])
    print(" | ".join(names))
    for row in rows:
        print(" | ".join(str(row[name]) for name in names))


if __name__ == "__main__":
    main()
