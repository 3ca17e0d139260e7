"""Deployments written by the real ProxyWhirl 0.3.3 library, with its state at each midnight.

Everything goes through ProxyWhirl's own ``SQLiteStorage`` API (``add_proxy``,
``add_proxies_batch(validated=True)``, ``record_validation``, ``record_validations_batch``,
``delete``), with the clock moved by ``time_machine`` (frozen between moves, so an add and
a check at one moment share it). After the last operation of each day the library's own
``proxy_statuses`` and ``proxy_identities`` rows and its ``load()`` are kept: the truth of
the pool as of the end of that day.

The plan exercises what ProxyWhirl does not record in history: checks of a url made before
it was added (history only: no status row yet), seed checks (a status with ``total_checks =
1`` and no history row), deletions (identity and status gone, history kept), re-adds (a
fresh status), checks at the very moment of an add, batches sharing one timestamp, and
credentials encrypted under ``PROXYWHIRL_CACHE_ENCRYPTION_KEY``.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import time_machine
from cryptography.fernet import Fernet
from sqlalchemy import event as sqlalchemy_event

PROTOCOLS = ("http", "https", "socks4", "socks5")
ERRORS = ("timeout", "connection_refused", "ssl_error", "proxy_error")


@dataclass
class LibraryDeployment:
    """A ProxyWhirl database and the library's own view of it at the end of each day."""

    database: Path
    cache_key: str
    days: list[date]
    statuses: dict[date, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """Per day, url -> the ``proxy_statuses`` row and ``proxy_identities`` row as written."""
    loaded: dict[date, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """Per day, url -> what ``SQLiteStorage.load()`` returned (credentials decrypted)."""
    checked_before_add: set[str] = field(default_factory=set)
    seeded: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    readded: set[str] = field(default_factory=set)
    credentialed: set[str] = field(default_factory=set)


@dataclass(order=True)
class _Event:
    at: datetime
    order: int
    kind: str = field(compare=False)
    urls: tuple[str, ...] = field(compare=False)
    payload: Any = field(compare=False, default=None)


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def write_library_deployment(
    folder: Path, *, proxies: int, days: int, end: date, seed: int
) -> LibraryDeployment:
    """Write ``proxies.db`` in ``folder`` through ProxyWhirl over ``days`` days ending ``end``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    first = end - timedelta(days=days - 1)
    deployment = LibraryDeployment(
        database=folder / "proxies.db",
        cache_key=Fernet.generate_key().decode(),
        days=[first + timedelta(days=n) for n in range(days)],
    )
    events = _plan(rng, deployment, proxies, first, days)
    with _environment("PROXYWHIRL_CACHE_ENCRYPTION_KEY", deployment.cache_key):
        asyncio.run(_run(deployment, events))
    return deployment


def _plan(
    rng: random.Random, deployment: LibraryDeployment, proxies: int, first: date, days: int
) -> list[_Event]:
    """Every operation, in time order; each at its own microsecond unless meant to share."""
    events: list[_Event] = []
    order = iter(range(10**9))
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    span = days * 86_400

    def moment(low: float, high: float) -> datetime:
        seconds = rng.uniform(low, high)
        return start + timedelta(microseconds=round(seconds * 1_000_000))

    def add(at: datetime, kind: str, *urls: str, payload: Any = None) -> None:
        events.append(_Event(at, next(order), kind, urls, payload))

    def checks(url: str, low: float, high: float, count: int) -> None:
        for _ in range(count):
            valid = rng.random() < 0.6
            latency = round(rng.lognormvariate(5, 0.6), 3) if valid else None
            add(moment(low, high), "check", url, payload=(valid, latency, rng.choice(ERRORS)))

    seeded_batches: dict[int, list[str]] = {}
    for index in range(proxies):
        credentials = index % 5 == 2 and index % 7 != 3
        if credentials:
            deployment.credentialed.add(url_of(index))
        payload = (f"user{index}", f"pa:ss@{index}/#") if credentials else None
        url = url_of(index)
        added = rng.uniform(0, span * 0.6) if index % 5 else rng.uniform(-3600, 0)
        if index % 7 == 3:  # added as already validated: a seed check, no history row
            day = int(max(added, 0) // 86_400)
            added = day * 86_400 + 1800.0 + day  # the day's batch of seeded proxies
            seeded_batches.setdefault(day, []).append(url)
            deployment.seeded.add(url)
        else:
            add(moment(added, added), "add", url, payload=payload)
            if index % 9 == 4:  # checked at the very moment it is added, right after
                add(moment(added, added), "check", url, payload=(True, 42.5, None))
        if index % 6 == 1:  # checked before it was added: history only
            deployment.checked_before_add.add(url)
            checks(url, max(-3600.0, added - 2 * 86_400), added, rng.randint(1, 3))
        checks(url, max(added, 0), span, rng.randint(2, 12))
        if index % 4 == 0:  # a run of failures: unhealthy, then dead from the third on
            streak = rng.uniform(max(added, 0), span)
            for step in range(4):
                add(
                    moment(streak + step, streak + step),
                    "check",
                    url,
                    payload=(False, None, "timeout"),
                )
        if index % 11 == 5:  # deleted later; some come back, checked meanwhile
            gone = rng.uniform(max(added, 0) + 60, span * 0.8)
            add(moment(gone, gone), "delete", url)
            deployment.deleted.add(url)
            checks(url, gone, gone + 86_400, 1)
            if index % 22 == 5:
                back = rng.uniform(gone + 3600, span - 1)
                add(moment(back, back), "add", url, payload=payload)
                deployment.readded.add(url)
    for day, urls in seeded_batches.items():
        latencies = [None if n % 2 else round(rng.uniform(50, 900), 3) for n in range(len(urls))]
        add(start + timedelta(days=day, seconds=1800 + day), "seed", *urls, payload=latencies)
    # Batches: one timestamp for several rows (record_validations_batch), a url twice.
    for day in range(days):
        at = moment(day * 86_400 + 1, (day + 1) * 86_400 - 1)
        urls = [url_of(n) for n in range(4)]
        rows: list[tuple[str, bool, float | None]] = [
            (url, rng.random() < 0.7, round(rng.uniform(10, 99), 3)) for url in urls
        ]
        rows.append((urls[0], False, None))
        add(at, "batch", *urls, payload=rows)
    events.sort()
    return [event for event in events if event.at < start + timedelta(seconds=span)]


def url_of(index: int) -> str:
    """The url of the plan's proxy ``index`` (public addresses: ProxyWhirl refuses private ones)."""
    protocol = PROTOCOLS[index % 4]
    return f"{protocol}://45.{index // 200}.{index % 200}.{index % 7 + 1}:{1080 + index % 50}"


async def _run(deployment: LibraryDeployment, events: list[_Event]) -> None:
    from proxywhirl.models import Proxy
    from proxywhirl.storage import SQLiteStorage

    storage = SQLiteStorage(deployment.database)
    # No fsync per commit (a test's file, never crashed mid-write): ProxyWhirl's statements
    # and transactions are unchanged, the build is many times faster.
    sqlalchemy_event.listen(storage.engine.sync_engine, "connect", _no_fsync)
    first = deployment.days[0]
    origin = datetime(first.year, first.month, first.day, tzinfo=UTC) - timedelta(days=1)
    with time_machine.travel(origin, tick=False) as traveller:
        await storage.initialize()
        pending = list(deployment.days)
        for event in events:
            while pending and event.at >= _midnight_after(pending[0]):
                await _keep_truth(deployment, storage, pending.pop(0))
            traveller.move_to(event.at)
            if event.kind == "add":
                credentials = event.payload
                proxy = (
                    Proxy(url=event.urls[0])
                    if credentials is None
                    else Proxy(url=event.urls[0], username=credentials[0], password=credentials[1])
                )
                await storage.add_proxy(proxy)
            elif event.kind == "seed":
                await storage.add_proxies_batch(
                    [
                        Proxy(url=url, average_response_time_ms=latency)
                        for url, latency in zip(event.urls, event.payload, strict=True)
                    ],
                    validated=True,
                )
            elif event.kind == "check":
                valid, latency, error = event.payload
                await storage.record_validation(
                    event.urls[0],
                    valid,
                    latency if valid else None,
                    None if valid else error,
                    None if valid else f"{error} via {event.urls[0]}",
                )
            elif event.kind == "batch":
                await storage.record_validations_batch(
                    [
                        (url, valid, latency if valid else None, None if valid else "timeout")
                        for url, valid, latency in event.payload
                    ]
                )
            elif event.kind == "delete":
                await storage.delete(event.urls[0])
        for day in pending:
            await _keep_truth(deployment, storage, day)
        await storage.close()


def _no_fsync(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


def _midnight_after(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


async def _keep_truth(deployment: LibraryDeployment, storage: Any, day: date) -> None:
    """The library's state at the end of ``day``: its rows and what ``load()`` returns."""
    deployment.loaded[day] = {row["url"]: row for row in await storage.load()}
    connection = sqlite3.connect(f"file:{deployment.database}?mode=ro", uri=True)
    try:
        connection.row_factory = sqlite3.Row
        rows = connection.execute(
            "SELECT * FROM proxy_identities i JOIN proxy_statuses s ON s.proxy_url = i.url"
        ).fetchall()
        deployment.statuses[day] = {row["url"]: dict(row) for row in rows}
    finally:
        connection.close()
