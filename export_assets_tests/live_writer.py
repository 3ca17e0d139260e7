"""A stand-in for a running ProxyWhirl: inserts validation results until told to stop.

Run as ``python -m export_assets_tests.live_writer DATABASE DAY STATS`` (a process of its
own: SQLite's locks are between processes). Like ProxyWhirl's ``record_validations_batch``
through SQLAlchemy, each transaction is ``BEGIN IMMEDIATE``, 50 inserted rows stamped with
one ``validated_at`` on DAY, ``COMMIT``, on a connection with the ``sqlite3`` module's
default 5 s busy timeout. It never changes the journal mode.

It writes ``STATS.ready`` after its first commit, stops when ``STATS.stop`` exists, and
then writes STATS (JSON): commits, ``database is locked`` errors (and other errors), the
slowest transaction in seconds, and for every transaction the wall-clock time it ended
and how long it took (``transactions``).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

ROWS_PER_COMMIT = 50
PAUSE_SECONDS = 0.002  # between transactions: ProxyWhirl checks proxies continuously


def run(database: Path, day: date, stats: Path) -> None:
    """Insert until ``stats.stop`` exists, then write the statistics to ``stats``."""
    connection = sqlite3.connect(database, isolation_level=None)  # timeout: the default 5 s
    urls = [row[0] for row in connection.execute("SELECT url FROM proxy_identities ORDER BY url")]
    stamp = datetime.combine(day, datetime.min.time()) + timedelta(hours=20)
    commits: list[float] = []
    transactions: list[tuple[float, float]] = []
    locked = other = 0
    slowest = 0.0
    ready, stop = stats.with_suffix(".ready"), stats.with_suffix(".stop")
    n = 0
    while not stop.exists():
        stamp += timedelta(microseconds=1000)
        text = stamp.strftime("%Y-%m-%d %H:%M:%S.%f")
        rows = [
            (
                urls[(n + i) % len(urls)],
                text,
                (n + i) % 4 != 0,
                100.0 + (n + i) % 900,
                None if (n + i) % 4 else "timeout",
                None if (n + i) % 4 else "timed out",
            )
            for i in range(ROWS_PER_COMMIT)
        ]
        started = time.perf_counter()
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(
                "INSERT INTO validation_results (proxy_url, validated_at, is_valid,"
                " response_time_ms, error_type, error_message) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            connection.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            if "locked" in str(exc):
                locked += 1
            else:
                other += 1
        else:
            commits.append(time.time())
            n += ROWS_PER_COMMIT
            if len(commits) == 1:
                ready.touch()
        took = time.perf_counter() - started
        slowest = max(slowest, took)
        transactions.append((time.time(), took))
        time.sleep(PAUSE_SECONDS)
    connection.close()
    stats.write_text(
        json.dumps(
            {
                "commits": len(commits),
                "locked": locked,
                "other_errors": other,
                "slowest_seconds": slowest,
                "commit_times": commits,
                "transactions": transactions,
            }
        )
    )


if __name__ == "__main__":
    run(Path(sys.argv[1]), date.fromisoformat(sys.argv[2]), Path(sys.argv[3]))
