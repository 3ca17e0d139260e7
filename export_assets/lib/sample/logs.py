"""ProxyWhirl's loguru JSON logs (``serialize=True``): daily rotation, old files compressed.

Each line is what loguru's ``_serialize_record`` writes: ``{"text": ..., "record": {...}}``
with ``json.dumps(..., default=str, ensure_ascii=False)``, so ``time.repr`` and
``elapsed.repr`` are ``str()`` of a datetime and a timedelta (no fraction when it is zero).
The API server runs in its own process on a host at UTC+01:00: its records carry that offset.
Rotated files are named, as loguru names them, after the moment the file was created.
"""

from __future__ import annotations

import gzip
import json
import random
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

from export_assets.lib.sample.hostile import HOSTILE_STRINGS
from export_assets.lib.sample.pool import SampleProxy, day_start

LOG_STEM = "proxywhirl"  # the live file is proxywhirl.log, rotated ones proxywhirl.<time>.log
LOG_NAME = f"{LOG_STEM}.log"
LIVE_DAYS = 2  # the live file holds the last two days; older days were rotated out
COMPRESS_AFTER_DAYS = 4  # rotated files older than this were compressed
_DAY_US = 86_400_000_000
_INSTALL = "/opt/proxywhirl/.venv/lib/python3.11/site-packages"
_LEVELS = {
    "DEBUG": ("🐞", 10),
    "INFO": ("ℹ️", 20),
    "SUCCESS": ("✅", 25),
    "WARNING": ("⚠️", 30),
    "ERROR": ("❌", 40),
}
_API_TIMEZONE = timezone(timedelta(hours=1))

Json = dict[str, object]


@dataclass(frozen=True)
class _Process:
    pid: int
    started: datetime
    zone: timezone


@dataclass(frozen=True)
class _Event:
    level: str
    name: str  # the component, e.g. proxywhirl.fetchers
    function: str
    line: int
    message: str
    extra: Json = field(default_factory=dict)
    exception: tuple[str, str] | None = None  # (type, value)
    traceback: str = ""  # appended to ``text`` (loguru's formatted exception)
    api: bool = False  # logged by the API server process


def write_logs(
    log_dir: Path,
    rng: random.Random,
    pool: tuple[SampleProxy, ...],
    first_day: date,
    last_day: date,
) -> int:
    """Write the live and rotated log files into ``log_dir``; return the complete records."""
    log_dir.mkdir(parents=True, exist_ok=True)
    events = _EventMaker(rng, pool)
    days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
    api = _Process(4257, day_start(first_day) - timedelta(hours=2, seconds=41.25), _API_TIMEZONE)
    first = _Process(4242, day_start(first_day) - timedelta(hours=5, minutes=17, seconds=3.5), UTC)
    # Halfway through, ProxyWhirl was restarted: a new pid, and elapsed starts over.
    restart = _Process(
        5120,
        day_start(days[len(days) // 2]) + timedelta(hours=9, minutes=30, microseconds=250),
        UTC,
    )
    records = 0
    live: list[str] = []
    for number, day in enumerate(days):
        start = day_start(day)
        lines = []
        for moment, event in events.day(number, start):
            main = restart if len(days) >= 3 and moment >= restart.started else first
            lines.append(_serialize(moment, api if event.api else main, event))
        records += len(lines)
        age = (last_day - day).days
        if age < LIVE_DAYS:
            live.extend(lines)
            continue
        # loguru names a rotated file after its creation: just after the midnight rotation.
        created = start + timedelta(microseconds=rng.randrange(100, 900))
        name = f"{LOG_STEM}.{created:%Y-%m-%d_%H-%M-%S_%f}.log"
        data = "".join(lines).encode("utf-8")
        if age <= COMPRESS_AFTER_DAYS:
            (log_dir / name).write_bytes(data)
        elif age == (last_day - first_day).days and age > COMPRESS_AFTER_DAYS + 1:
            # An older compression setting, on the oldest file (when two or more are compressed).
            _write_zip(log_dir / f"{name}.zip", name, data, start + timedelta(days=1, seconds=-2))
        else:
            _write_gzip(log_dir / f"{name}.gz", name, data)
    main = restart if len(days) >= 3 else first
    live_file = _live_file(rng, live, main, last_day, events)
    (log_dir / LOG_NAME).write_bytes(live_file.encode("utf-8"))
    return records


def _live_file(
    rng: random.Random, lines: list[str], main: _Process, last_day: date, events: _EventMaker
) -> str:
    """The live file: its records, two malformed lines, and a last line still being written."""
    lines = list(lines)
    at = rng.randrange(1, len(lines))
    # A plain-text line from a sink briefly misconfigured without serialize=True.
    stamp = json.loads(lines[at])["text"].split(" | ", 1)[0]
    lines.insert(at, f"{stamp} | INFO     | proxywhirl.cli:main:88 - Starting ProxyWhirl 0.3.3\n")
    # A record cut short by a crash, then the restarted process went on on the next line.
    at = rng.randrange(1, len(lines))
    cut = lines[at][: len(lines[at]) // 3]
    lines.insert(at, cut + "\n")
    last = day_start(last_day) + timedelta(microseconds=_DAY_US - 1)
    partial = _serialize(last, main, events.make("validate"))
    return "".join(lines) + partial[: len(partial) // 2]


def _serialize(moment: datetime, process: _Process, event: _Event) -> str:
    """One record as loguru's serialize=True sink writes it (``default=str`` semantics)."""
    local = moment.astimezone(process.zone)
    icon, number = _LEVELS[event.level]
    text = (
        f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d} | {event.level:<8} | "
        f"{event.name}:{event.function}:{event.line} - {event.message}\n{event.traceback}"
    )
    module = event.name.rsplit(".", 1)[-1]
    elapsed = moment - process.started
    exception: Json | None = None
    if event.exception is not None:
        exception = {
            "type": event.exception[0],
            "value": event.exception[1],
            "traceback": bool(event.traceback),
        }
    thread = (
        {"id": 140245790512960, "name": "MainThread"}
        if event.api or not event.name.endswith("validators")
        else {"id": 140245761152576, "name": "ThreadPoolExecutor-0_1"}
    )
    serializable = {
        "text": text,
        "record": {
            "elapsed": {"repr": str(elapsed), "seconds": elapsed.total_seconds()},
            "exception": exception,
            "extra": event.extra,
            "file": {
                "name": f"{module}.py",
                "path": f"{_INSTALL}/{event.name.replace('.', '/')}.py",
            },
            "function": event.function,
            "level": {"icon": icon, "name": event.level, "no": number},
            "line": event.line,
            "message": event.message,
            "module": module,
            "name": event.name,
            "process": {"id": process.pid, "name": "MainProcess"},
            "thread": thread,
            "time": {"repr": str(local), "timestamp": local.timestamp()},
        },
    }
    return json.dumps(serializable, ensure_ascii=False) + "\n"


def _write_gzip(path: Path, name: str, data: bytes) -> None:
    # mtime=0: the gzip header must not carry the generation time (reproducible bytes).
    with path.open("wb") as raw, gzip.GzipFile(name, "wb", fileobj=raw, mtime=0) as packed:
        packed.write(data)


def _write_zip(path: Path, name: str, data: bytes, modified: datetime) -> None:
    member = zipfile.ZipInfo(name, date_time=modified.timetuple()[:6])
    member.compress_type = zipfile.ZIP_DEFLATED
    member.external_attr = 0o100644 << 16  # a regular file, rw-r--r--, as loguru's f.write
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, data)


class _EventMaker:
    """Draws the day's log events: what ProxyWhirl's components say, secrets and all."""

    _WEIGHTS: tuple[tuple[str, int], ...] = (
        ("fetched", 10),
        ("fetch_failed", 6),
        ("validate", 22),
        ("batch", 10),
        ("select", 20),
        ("dead", 4),
        ("saved", 8),
        ("locked", 2),
        ("request", 12),
        ("bad_key", 2),
        ("hostile", 2),
        ("traceback", 1),
        ("added", 3),
    )

    def __init__(self, rng: random.Random, pool: tuple[SampleProxy, ...]) -> None:
        self._rng = rng
        self._pool = pool
        self._credentialed = [proxy for proxy in pool if proxy.username is not None] or list(pool)
        self._kinds = [kind for kind, _ in self._WEIGHTS]
        self._weights = [weight for _, weight in self._WEIGHTS]
        self._makers: dict[str, Callable[[], _Event]] = {
            "fetched": self._fetched,
            "fetch_failed": self._fetch_failed,
            "validate": self._validate,
            "batch": self._batch,
            "select": self._select,
            "dead": self._dead,
            "saved": self._saved,
            "locked": self._locked,
            "request": self._request,
            "bad_key": self._bad_key,
            "hostile": self._hostile,
            "traceback": self._traceback,
            "added": self._added,
        }
        self._hostile_turn = 0

    def day(self, number: int, start: datetime) -> list[tuple[datetime, _Event]]:
        """A few hundred events over the day, at 00:00:00.000000 and 23:59:59.999999 too."""
        rng = self._rng
        count = rng.randint(200, 400)
        offsets = sorted([0, _DAY_US - 1, *rng.sample(range(1, _DAY_US - 1), count - 2)])
        kinds = rng.choices(self._kinds, self._weights, k=count)
        # Every day carries a credential URL, a hostile string and a traceback with a secret.
        for position, kind in zip(
            rng.sample(range(1, count - 1), 3), ("validate", "hostile", "traceback"), strict=True
        ):
            kinds[position] = kind
        kinds[0] = "select"
        # The last record of every other day comes from the UTC+01:00 process: locally it is
        # already the next day.
        kinds[-1] = "request" if number % 2 else "saved"
        return [
            (start + timedelta(microseconds=offset), self.make(kind))
            for offset, kind in zip(offsets, kinds, strict=True)
        ]

    def make(self, kind: str) -> _Event:
        """One event of ``kind``."""
        return self._makers[kind]()

    def _proxy(self, *, credentialed: bool = False) -> SampleProxy:
        return self._rng.choice(self._credentialed if credentialed else self._pool)

    def _fetched(self) -> _Event:
        proxy, count = self._proxy(), self._rng.randint(20, 5000)
        return _Event(
            "INFO",
            "proxywhirl.fetchers",
            "fetch_from_source",
            1288,
            f"Fetched {count} proxies from {proxy.source_url or proxy.source}",
            {
                "source": {"name": proxy.source, "url": proxy.source_url},
                "count": count,
                "duration_s": round(self._rng.uniform(0.2, 30.0), 3),
            },
        )

    def _fetch_failed(self) -> _Event:
        proxy = self._proxy()
        url = proxy.source_url or "https://www.proxy-list.download/api/v1/get?type=http"
        return _Event(
            "WARNING",
            "proxywhirl.fetchers",
            "fetch_with_progress",
            1362,
            f"Failed to fetch from {url}",
            {"source": proxy.source, "retry": {"attempt": 3, "max": 3}},
            exception=("ConnectTimeout", "timed out"),
        )

    def _validate(self) -> _Event:
        proxy = self._proxy(credentialed=self._rng.random() < 0.5)
        return _Event(
            "DEBUG",
            "proxywhirl.validators",
            "validate",
            214,
            f"Validating {proxy.url_with_credentials}",
            {
                "proxy": {"url": proxy.url_with_credentials, "protocol": proxy.protocol},
                "attempt": self._rng.randint(1, 3),
            },
        )

    def _batch(self) -> _Event:
        rng = self._rng
        size = rng.randint(50, 500)
        healthy = rng.randint(0, size)
        timeouts = rng.randint(0, size - healthy)
        return _Event(
            "INFO",
            "proxywhirl.validators",
            "validate_batch",
            402,
            f"Validated {size} proxies: {healthy} healthy, {size - healthy} failed",
            {
                "batch": {
                    "size": size,
                    "healthy": healthy,
                    "errors": {
                        "timeout": timeouts,
                        "connection_refused": size - healthy - timeouts,
                    },
                }
            },
        )

    def _select(self) -> _Event:
        proxy = self._proxy()
        return _Event(
            "DEBUG",
            "proxywhirl.rotator",
            "_select_proxy",
            318,
            f"Selected {proxy.url} (strategy=round-robin)",
            {"strategy": "round-robin", "pool_size": len(self._pool)},
        )

    def _dead(self) -> _Event:
        proxy = self._proxy()
        return _Event(
            "WARNING",
            "proxywhirl.rotator",
            "_mark_failure",
            455,
            f"Proxy {proxy.url} marked dead after 3 consecutive failures",
            {"proxy_url": proxy.url, "consecutive_failures": 3},
        )

    def _saved(self) -> _Event:
        rows = self._rng.randint(50, 500)
        return _Event(
            "SUCCESS",
            "proxywhirl.storage",
            "record_validations_batch",
            733,
            f"Saved {rows} validation results",
            {"table": "validation_results", "rows": rows},
        )

    def _locked(self) -> _Event:
        return _Event(
            "ERROR",
            "proxywhirl.storage",
            "save",
            612,
            "Failed to save proxies: (sqlite3.OperationalError) database is locked",
            {"database": "sqlite+aiosqlite:///proxies.db", "attempt": 1},
            exception=("OperationalError", "(sqlite3.OperationalError) database is locked"),
        )

    def _request(self) -> _Event:
        rng = self._rng
        path, status = rng.choice(
            (
                ("/api/v1/proxies", 200),
                ("/api/v1/proxies/rotate", 200),
                ("/api/v1/health", 200),
                ("/api/v1/proxies/export", 500),
                ("/api/v1/proxies/9999", 404),
            )
        )
        country = rng.choice(("US", "DE", None))
        return _Event(
            "INFO",
            "proxywhirl.api.core",
            "log_requests",
            151,
            f"GET {path} {status}",
            {
                "request": {
                    "method": "GET",
                    "path": path,
                    "query": {"country": country},
                    "client": f"203.0.113.{rng.randint(1, 254)}",
                    "user_agent": "python-httpx/0.28.1",
                },
                "status": status,
                "duration_ms": round(rng.uniform(1.0, 800.0), 2),
            },
            api=True,
        )

    def _bad_key(self) -> _Event:
        key = "pk_live_" + self._rng.randbytes(12).hex()
        return _Event(
            "WARNING",
            "proxywhirl.api.core",
            "verify_api_key",
            98,
            "Rejected request with an invalid API key",
            {"request": {"path": "/api/v1/proxies", "headers": {"x-api-key": key}}},
            api=True,
        )

    def _hostile(self) -> _Event:
        # Cycle through the strings so that every one shows up in the logs of a long sample.
        text = HOSTILE_STRINGS[self._hostile_turn % len(HOSTILE_STRINGS)]
        self._hostile_turn += 1
        proxy = self._proxy()
        return _Event(
            "WARNING",
            "proxywhirl.fetchers",
            "parse_source",
            1410,
            f"Skipping malformed line from {proxy.source_url or proxy.source}: {text}",
            {"line": text, "source": {"name": proxy.source, "nested": {"raw": [text, 1, None]}}},
        )

    def _traceback(self) -> _Event:
        proxy = self._proxy(credentialed=True)
        secret_url = proxy.url_with_credentials
        # loguru with diagnose=True prints variable values under the failing line.
        traceback = (
            "Traceback (most recent call last):\n\n"
            f'  File "{_INSTALL}/proxywhirl/rotator.py", line 412, in _request\n'
            "    response = self._client.get(url, proxy=proxy_url)\n"
            "               │                │         └ "
            f"{secret_url!r}\n"
            "               │                └ 'https://httpbin.org/ip'\n"
            "               └ <proxywhirl.rotator.ProxyRotator object at 0x7f8e2c1e5d90>\n\n"
            f'> File "{_INSTALL}/httpx/_transports/default.py", line 118, in map_httpcore_'
            "exceptions\n"
            "    raise mapped_exc(message) from exc\n\n"
            "httpx.ProxyError: 407 Proxy Authentication Required\n"
        )
        return _Event(
            "ERROR",
            "proxywhirl.rotator",
            "_request",
            412,
            f"Request through {proxy.url} failed",
            {"proxy_url": proxy.url, "attempt": 2},
            exception=("ProxyError", "407 Proxy Authentication Required"),
            traceback=traceback,
        )

    def _added(self) -> _Event:
        proxies = self._rng.sample(self._pool, min(3, len(self._pool)))
        return _Event(
            "INFO",
            "proxywhirl.storage",
            "add_proxies_batch",
            540,
            f"Added {len(proxies)} proxies to the pool",
            {"proxies": [{"url": p.url, "source": p.source} for p in proxies]},
        )
