"""The sample ProxyWhirl deployment: real files, read back with independent readers."""

from __future__ import annotations

import base64
import gzip
import json
import re
import sqlite3
import stat
import tomllib
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from export_assets.lib.sample import HOSTILE_STRINGS, SampleDeployment, write_sample_deployment
from export_assets.lib.sample.config import toml_value
from export_assets.lib.source.schema import PROXYWHIRL_DDL
from export_assets.lib.source.status import ProxyHealth

END = date(2026, 11, 14)
LOST = "*" * 10  # ProxyWhirl 0.3.3's save_config writes this in place of a secret
DAYS = 8
# Small enough to run in a blink, big enough to hold every quirk. Any, to splat into calls.
SMALL: dict[str, Any] = {
    "proxies": 60,
    "days": DAYS,
    "end_date": END,
    "validations_per_day": 1500,
    "seed": 11,
}
STRICT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")
ROTATED = re.compile(r"proxywhirl\.\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{6}\.log(\.gz|\.zip)?")
LOGURU_KEYS = {
    "elapsed",
    "exception",
    "extra",
    "file",
    "function",
    "level",
    "line",
    "message",
    "module",
    "name",
    "process",
    "thread",
    "time",
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleDeployment:
    return write_sample_deployment(tmp_path_factory.mktemp("sample") / "proxywhirl", **SMALL)


@pytest.fixture(scope="module")
def db(sample: SampleDeployment) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(f"file:{sample.database}?mode=ro", uri=True)
    yield connection
    connection.close()


def _env(sample: SampleDeployment) -> dict[str, str]:
    lines = sample.env_file.read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines)


def _parse_liberal(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _days(sample: SampleDeployment) -> list[date]:
    return [sample.first_day + timedelta(days=n) for n in range(DAYS)]


# --- the database --------------------------------------------------------------------------


def test_schema_is_proxywhirls_ddl_in_delete_journal_mode(
    sample: SampleDeployment, db: sqlite3.Connection
) -> None:
    statements = [
        sql
        for (sql,) in db.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
        )
    ]
    assert statements == list(PROXYWHIRL_DDL)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert sample.database.read_bytes()[18:20] == b"\x01\x01"  # rollback journal, not WAL
    assert not list(sample.root.glob("*-journal"))
    assert not list(sample.root.glob(".*.partial"))


def test_counts_match_the_arguments(sample: SampleDeployment, db: sqlite3.Connection) -> None:
    assert db.execute("SELECT COUNT(*) FROM proxy_identities").fetchone() == (60,)
    assert sample.validations == 8 * 1500
    assert db.execute("SELECT COUNT(*), MIN(id), MAX(id) FROM validation_results").fetchone() == (
        12000,
        1,
        12000,
    )
    per_day = db.execute(
        "SELECT substr(validated_at, 1, 10), COUNT(*) FROM validation_results GROUP BY 1"
    ).fetchall()
    assert per_day == [(day.isoformat(), 1500) for day in _days(sample)]
    assert (sample.first_day, sample.last_day) == (date(2026, 11, 7), END)


def test_ids_follow_time_and_batches_share_one_timestamp(db: sqlite3.Connection) -> None:
    rows = db.execute("SELECT id, validated_at FROM validation_results ORDER BY id").fetchall()
    assert [at for _, at in rows] == sorted(at for _, at in rows)
    batch_sizes = [
        n for (n,) in db.execute("SELECT COUNT(*) FROM validation_results GROUP BY validated_at")
    ]
    assert max(batch_sizes) > 10  # record_validations_batch stamps a whole batch with one time
    duplicates = db.execute(
        "SELECT COUNT(*) FROM (SELECT 1 FROM validation_results "
        "GROUP BY validated_at, proxy_url HAVING COUNT(*) > 1)"
    ).fetchone()
    assert duplicates == (0,)


def test_every_day_has_checks_at_its_first_and_last_microsecond(
    sample: SampleDeployment, db: sqlite3.Connection
) -> None:
    stamps = {at for (at,) in db.execute("SELECT DISTINCT validated_at FROM validation_results")}
    for day in _days(sample):
        assert f"{day} 00:00:00.000000" in stamps
        assert f"{day} 23:59:59.999999" in stamps


def test_datetimes_are_strict_except_some_discovered_at(db: sqlite3.Connection) -> None:
    for column, table in (
        ("validated_at", "validation_results"),
        ("last_check_at", "proxy_statuses"),
        ("last_success_at", "proxy_statuses"),
        ("last_failure_at", "proxy_statuses"),
        ("updated_at", "proxy_statuses"),
    ):
        values = [v for (v,) in db.execute(f"SELECT {column} FROM {table}") if v is not None]
        assert values, column
        assert all(STRICT.fullmatch(v) for v in values), column
    discovered = [v for (v,) in db.execute("SELECT discovered_at FROM proxy_identities")]
    liberal = [v for v in discovered if not STRICT.fullmatch(v)]
    assert any("T" in v for v in liberal)
    assert any(v.endswith("+00:00") for v in liberal)
    assert any(len(v) == 19 for v in liberal)  # no fraction
    assert len(liberal) == 3
    assert all(_parse_liberal(v) for v in discovered)


def test_booleans_are_integers_and_failures_have_no_latency(db: sqlite3.Connection) -> None:
    assert db.execute("SELECT DISTINCT is_valid FROM validation_results ORDER BY 1").fetchall() == [
        (0,),
        (1,),
    ]
    flags = db.execute("SELECT DISTINCT is_residential, is_datacenter FROM proxy_identities")
    assert {flag for row in flags for flag in row} == {0, 1}
    assert db.execute(
        "SELECT COUNT(*) FROM validation_results WHERE is_valid = 0 AND (response_time_ms IS NOT "
        "NULL OR error_type IS NULL) OR is_valid = 1 AND (response_time_ms IS NULL OR error_type "
        "IS NOT NULL OR error_message IS NOT NULL)"
    ).fetchone() == (0,)
    types = {t for (t,) in db.execute("SELECT DISTINCT error_type FROM validation_results")}
    assert types == {
        None,
        "timeout",
        "connection_refused",
        "ssl_error",
        "proxy_error",
        "http_error",
        "dns_error",
    }


def test_identities_look_like_proxywhirls(db: sqlite3.Connection) -> None:
    rows = db.execute("SELECT url, protocol, host, port, country_code FROM proxy_identities")
    rows_list = rows.fetchall()
    for url, protocol, host, port, _ in rows_list:
        assert url == f"{protocol}://{host}:{port}"
        assert "@" not in url
        assert protocol in {"http", "https", "socks4", "socks5"}
    no_country = sum(code is None for *_, code in rows_list) / len(rows_list)
    assert 0.25 < no_country < 0.6  # add_proxies_batch drops country_code
    (no_source_url,) = db.execute(
        "SELECT COUNT(*) FROM proxy_identities WHERE source_url IS NULL"
    ).fetchone()
    assert no_source_url > 0


def test_pool_grows_and_a_few_proxies_are_checked_before_their_discovery(
    sample: SampleDeployment, db: sqlite3.Connection
) -> None:
    discovered = {
        url: _parse_liberal(at)
        for url, at in db.execute("SELECT url, discovered_at FROM proxy_identities")
    }
    window = datetime.combine(sample.first_day, datetime.min.time(), tzinfo=UTC)
    joined_days = {at.date() for at in discovered.values() if at >= window}
    assert len(joined_days) >= 3
    assert sum(at < window for at in discovered.values()) > len(discovered) / 2
    first_checks = db.execute(
        "SELECT proxy_url, MIN(validated_at) FROM validation_results GROUP BY proxy_url"
    )
    early = [url for url, first in first_checks if _parse_liberal(first) <= discovered[url]]
    # Validated hours before being added (as a fetched list is), only ever inside the window.
    assert 1 <= len(early) <= len(discovered) // 10
    for url in early:
        assert discovered[url] >= window, url


def _replay(
    rows: list[tuple[str, int, float | None]], seed: tuple[str, float] | None
) -> ProxyHealth:
    health = ProxyHealth()
    if seed is not None:
        health.record(seed[0], True, seed[1])
    for at, ok, elapsed in rows:
        health.record(at, bool(ok), elapsed)
    return health


def test_statuses_are_the_replayed_history_plus_seed_checks(
    sample: SampleDeployment, db: sqlite3.Connection
) -> None:
    discovered = dict(db.execute("SELECT url, discovered_at FROM proxy_identities").fetchall())
    history: dict[str, list[tuple[str, int, float | None]]] = defaultdict(list)
    before_add = 0
    for url, at, ok, elapsed in db.execute(
        "SELECT proxy_url, validated_at, is_valid, response_time_ms FROM validation_results "
        "ORDER BY validated_at, id"
    ):
        if _parse_liberal(at) < _parse_liberal(discovered[url]):
            before_add += 1  # ProxyWhirl had no status row to update yet: history only
            continue
        history[url].append((at, ok, elapsed))
    assert before_add > 0
    statuses = db.execute("SELECT * FROM proxy_statuses").fetchall()
    # ProxyWhirl creates the status row with the identity, whether checked or not.
    assert sorted(status[0] for status in statuses) == sorted(discovered)
    seeded_without_history = 0
    seeded = 0
    for status in statuses:
        url, avg, rate_7d = status[0], status[9], status[10]
        rows = history[url]
        plain = _replay(rows, None)
        seed_at = None
        if status[7] == plain.total_checks + 1:  # added as already validated: a seed check
            seeded += 1
            seeded_without_history += not rows
            seed_at = discovered[url]
            assert STRICT.fullmatch(seed_at)
            # The seed's latency is not in the history: solve for it (the average is affine in it).
            low, high = _replay(rows, (seed_at, 0.0)), _replay(rows, (seed_at, 1.0))
            assert low.avg_response_time_ms is not None
            assert high.avg_response_time_ms is not None
            latency = (avg - low.avg_response_time_ms) / (
                high.avg_response_time_ms - low.avg_response_time_ms
            )
            assert latency > 1.0
            expected = _replay(rows, (seed_at, latency))
        else:
            assert status[7] == plain.total_checks, url
            expected = plain
        assert status[1:9] == (
            expected.health_status,
            expected.last_success_at,
            expected.last_failure_at,
            expected.last_check_at,
            expected.consecutive_successes,
            expected.consecutive_failures,
            expected.total_checks,
            expected.total_successes,
        ), url
        if expected.avg_response_time_ms is None:
            assert avg is None, url
        else:
            assert avg == pytest.approx(expected.avg_response_time_ms, rel=1e-9)
        # updated_at: the last counted check's time, or the add's for a proxy never checked.
        added = _parse_liberal(discovered[url]).strftime("%Y-%m-%d %H:%M:%S.%f")
        assert status[11] == (expected.last_check_at or added)
        assert rate_7d is None, url  # ProxyWhirl 0.3.3 never sets success_rate_7d
    assert seeded >= 2
    assert seeded_without_history >= 2
    never_checked = sum(status[7] == 0 for status in statuses)
    assert never_checked >= 1
    kinds = {s[1] for s in statuses}
    assert kinds - {"unhealthy"} == {"healthy", "dead", "unknown"}


def test_some_proxies_die_and_some_recover(db: sqlite3.Connection) -> None:
    longest: dict[str, int] = defaultdict(int)
    streak: dict[str, int] = defaultdict(int)
    for url, ok in db.execute(
        "SELECT proxy_url, is_valid FROM validation_results ORDER BY validated_at, id"
    ):
        streak[url] = 0 if ok else streak[url] + 1
        longest[url] = max(longest[url], streak[url])
    final = dict(db.execute("SELECT proxy_url, health_status FROM proxy_statuses").fetchall())
    assert any(final[url] == "dead" for url in longest)
    assert any(final[url] == "healthy" and n >= 3 for url, n in longest.items())  # recovered
    always = db.execute(
        "SELECT COUNT(*) FROM (SELECT proxy_url FROM validation_results GROUP BY proxy_url "
        "HAVING MIN(is_valid) = 1)"
    ).fetchone()[0]
    assert always >= 1


def test_credentials_decrypt_with_the_key_in_env(
    sample: SampleDeployment, db: sqlite3.Connection
) -> None:
    env = _env(sample)
    assert env["PROXYWHIRL_CACHE_ENCRYPTION_KEY"] == sample.cache_encryption_key
    fernet = Fernet(env["PROXYWHIRL_CACHE_ENCRYPTION_KEY"])
    pairs = db.execute(
        "SELECT username, password FROM proxy_identities WHERE username IS NOT NULL"
    ).fetchall()
    assert 0.1 < len(pairs) / 60 < 0.25
    plaintexts: list[tuple[str, str]] = []
    legacy = 0
    for username, password in pairs:
        if username.startswith("encrypted:"):
            assert password.startswith("encrypted:")
            user = fernet.decrypt(base64.b64decode(username.removeprefix("encrypted:"))).decode()
            secret = fernet.decrypt(base64.b64decode(password.removeprefix("encrypted:"))).decode()
        else:
            legacy += 1
            user, secret = username, password
        assert re.fullmatch(r"pw-user-\d{4}", user)
        assert len(secret) >= 16
        assert set(":@/%") <= set(secret)
        assert set("'\"") & set(secret)
        plaintexts.append((user, secret))
    assert 1 <= legacy < len(pairs)
    messages = [
        m
        for (m,) in db.execute(
            "SELECT DISTINCT error_message FROM validation_results WHERE error_message LIKE '%@%'"
        )
    ]
    assert any(f"{user}:{secret}@" in m for m in messages for user, secret in plaintexts)


def test_every_hostile_string_is_in_the_database_free_text(db: sqlite3.Connection) -> None:
    texts = [
        value
        for (value,) in db.execute(
            "SELECT source FROM proxy_identities UNION ALL SELECT source_url FROM "
            "proxy_identities UNION ALL SELECT DISTINCT error_message FROM validation_results"
        )
        if value is not None
    ]
    for hostile in HOSTILE_STRINGS:
        assert any(hostile in text for text in texts), hostile[:40]
    formulas = [t for t in texts if t[:1] in "=+-@"]
    assert {t[0] for t in formulas} == {"=", "+", "-", "@"}  # at the start of a field
    assert len(max(HOSTILE_STRINGS, key=len)) >= 5000


# --- logs ----------------------------------------------------------------------------------


def _log_files(sample: SampleDeployment) -> dict[str, bytes]:
    contents: dict[str, bytes] = {}
    for path in sorted(sample.log_dir.iterdir()):
        if path.suffix == ".gz":
            contents[path.name] = gzip.decompress(path.read_bytes())
        elif path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                assert archive.namelist() == [path.name.removesuffix(".zip")]
                contents[path.name] = archive.read(archive.namelist()[0])
        else:
            contents[path.name] = path.read_bytes()
    return contents


def test_log_files_rotate_daily_and_old_ones_are_compressed(sample: SampleDeployment) -> None:
    names = sorted(p.name for p in sample.log_dir.iterdir())
    assert names[-1] == "proxywhirl.log"
    rotated = names[:-1]
    assert len(rotated) == DAYS - 2
    assert all(ROTATED.fullmatch(name) for name in rotated)
    assert [name.endswith(".zip") for name in rotated].count(True) == 1
    assert rotated[0].endswith(".zip")
    assert [name.endswith(".gz") for name in rotated] == [False, True, True, False, False, False]
    for name in rotated:  # named after the file's creation, just after the midnight rotation
        day = date.fromisoformat(name.split(".")[1][:10])
        records = [json.loads(line) for line in _log_files(sample)[name].splitlines()]
        assert {_record_time(r).date() for r in records} == {day}


def _record_time(line: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(line["record"]["time"]["timestamp"], UTC)


def test_log_lines_are_loguru_json(sample: SampleDeployment) -> None:
    records: list[dict[str, Any]] = []
    malformed: list[str] = []
    for name, content in _log_files(sample).items():
        text = content.decode("utf-8")
        lines = text.split("\n")
        if name == "proxywhirl.log":
            assert not text.endswith("\n")  # ProxyWhirl was writing its last line
            with pytest.raises(json.JSONDecodeError):
                json.loads(lines[-1])
            assert lines[-1].startswith('{"text": ')
        else:
            assert lines[-1] == ""
        for line in lines[:-1]:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                malformed.append(line)
    assert len(malformed) == 2
    assert len(records) == sample.log_records
    levels: set[str] = set()
    for entry in records:
        record = entry["record"]
        assert set(record) == LOGURU_KEYS
        assert set(record["level"]) == {"icon", "name", "no"}
        assert record["exception"] is None or set(record["exception"]) == {
            "type",
            "value",
            "traceback",
        }
        moment = datetime.fromisoformat(record["time"]["repr"])
        assert moment.timestamp() == pytest.approx(record["time"]["timestamp"], abs=1e-6)
        local = f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"
        assert entry["text"].startswith(
            f"{local} | {record['level']['name']:<8} | {record['name']}:{record['function']}:"
            f"{record['line']} - {record['message']}\n"
        )
        assert record["module"] == record["name"].rsplit(".", 1)[-1]
        levels.add(record["level"]["name"])
    assert levels == {"DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"}
    names = {entry["record"]["name"] for entry in records}
    assert {
        "proxywhirl.fetchers",
        "proxywhirl.api.core",
        "proxywhirl.rotator",
        "proxywhirl.storage",
        "proxywhirl.validators",
    } <= names
    offsets = {entry["record"]["time"]["repr"][-6:] for entry in records}
    assert offsets == {"+00:00", "+01:00"}
    for day in _days(sample):
        day_records = [r for r in records if _record_time(r).date() == day]
        assert 200 <= len(day_records) <= 400
        stamps = {_record_time(r).strftime("%H:%M:%S.%f") for r in day_records}
        assert "00:00:00.000000" in stamps
        assert "23:59:59.999999" in stamps
    tracebacks = [r for r in records if r["record"]["exception"] and "\nTraceback" in r["text"]]
    assert tracebacks
    assert all(r["record"]["exception"]["traceback"] is True for r in tracebacks)
    assert any(
        r["record"]["exception"]["traceback"] is False for r in records if r["record"]["exception"]
    )
    assert any(isinstance(r["record"]["extra"].get("batch"), dict) for r in records)


def test_logs_carry_credentials_and_hostile_strings(
    sample: SampleDeployment, db: sqlite3.Connection
) -> None:
    fernet = Fernet(sample.cache_encryption_key)
    secrets = [
        fernet.decrypt(base64.b64decode(p.removeprefix("encrypted:"))).decode()
        for (p,) in db.execute(
            "SELECT password FROM proxy_identities WHERE password LIKE 'encrypted:%'"
        )
    ]
    records = [
        json.loads(line)
        for content in _log_files(sample).values()
        for line in content.decode().split("\n")
        if line.startswith("{") and line.endswith("}")
    ]
    messages = [r["record"]["message"] for r in records]
    extras = [json.dumps(r["record"]["extra"], ensure_ascii=False) for r in records]
    tracebacks = [r["text"] for r in records if "\nTraceback" in r["text"]]
    assert any(f":{s}@" in m for m in messages for s in secrets)
    assert any(json.dumps(s)[1:-1] in e for e in extras for s in secrets)
    assert any(repr(s)[1:-1] in t or s in t for t in tracebacks for s in secrets)
    hostile_in_logs = sum(any(h in m for m in messages) for h in HOSTILE_STRINGS)
    assert hostile_in_logs >= DAYS


# --- config and .env -----------------------------------------------------------------------


def test_config_parses_and_holds_tokens_plain_entries_and_lost_secrets(
    sample: SampleDeployment,
) -> None:
    config = tomllib.loads(sample.config_path.read_text(encoding="utf-8"))
    for key in (
        "rotation_strategy",
        "health_check_interval",
        "timeout",
        "max_retries",
        "follow_redirects",
        "verify_ssl",
        "default_format",
        "color",
        "verbose",
        "storage_backend",
        "storage_path",
        "encrypt_credentials",
        "encryption_key_env",
    ):
        assert key in config, key
    assert any(k.startswith("cache_") for k in config)
    assert any(k.startswith("rate_limit_") for k in config)
    assert config["encrypt_credentials"] is True
    assert config["encryption_key_env"] == "PROXYWHIRL_KEY"
    assert config["data_storage"]["pool_size"] == 5
    fernet = Fernet(_env(sample)[config["encryption_key_env"]])
    entries = config["proxies"]
    lost = [e for e in entries if e.get("password") == LOST]
    tokens = [e for e in entries if "password" in e and e["password"] != LOST]
    assert len(lost) == 1
    assert lost[0]["username"] == LOST
    assert any("username" not in e for e in entries)
    assert tokens
    for entry in tokens:
        assert re.fullmatch(r"pw-user-\d{4}", fernet.decrypt(entry["username"]).decode())
        assert len(fernet.decrypt(entry["password"]).decode()) >= 16
    assert all("@" not in e["url"] for e in entries)
    prefix = config["cache_key_prefix"]
    assert all(h in prefix for h in HOSTILE_STRINGS if len(h) < 100)


@pytest.mark.parametrize("text", HOSTILE_STRINGS)
def test_toml_strings_round_trip(text: str) -> None:
    assert tomllib.loads(f"value = {toml_value(text)}\n")["value"] == text


def test_env_file_is_private_and_points_at_the_deployment(sample: SampleDeployment) -> None:
    assert stat.S_IMODE(sample.env_file.stat().st_mode) == 0o600
    env = _env(sample)
    assert set(env) == {
        "PROXYWHIRL_CACHE_ENCRYPTION_KEY",
        "PROXYWHIRL_KEY",
        "PROXYWHIRL_DB",
        "PROXYWHIRL_LOG_DIR",
        "PROXYWHIRL_CONFIG",
        "EXPORT_PARTITION_START",
    }
    # The partitions start with the sample's data (the UI shows its days, not a sliver).
    assert env["EXPORT_PARTITION_START"] == sample.first_day.isoformat()
    assert env["PROXYWHIRL_KEY"] == sample.config_encryption_key
    assert env["PROXYWHIRL_KEY"] != env["PROXYWHIRL_CACHE_ENCRYPTION_KEY"]
    for name, path in (
        ("PROXYWHIRL_DB", sample.database),
        ("PROXYWHIRL_LOG_DIR", sample.log_dir),
        ("PROXYWHIRL_CONFIG", sample.config_path),
    ):
        assert Path(env[name]).is_absolute()
        assert Path(env[name]) == path
        assert path.exists()


# --- determinism, refusals, arguments ------------------------------------------------------


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes().replace(str(root).encode(), b"<root>")
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_same_arguments_give_byte_identical_files(tmp_path: Path, sample: SampleDeployment) -> None:
    again = write_sample_deployment(tmp_path / "again", **SMALL)
    assert _files(again.root) == _files(sample.root)
    assert (
        replace(
            again,
            root=sample.root,
            database=sample.database,
            log_dir=sample.log_dir,
            config_path=sample.config_path,
            env_file=sample.env_file,
        )
        == sample
    )
    other = write_sample_deployment(tmp_path / "other", **{**SMALL, "seed": 12})
    assert other.cache_encryption_key != sample.cache_encryption_key
    assert other.database.read_bytes() != sample.database.read_bytes()


def test_refuses_to_overwrite_an_existing_database(tmp_path: Path) -> None:
    database = tmp_path / "proxies.db"
    database.write_bytes(b"a real ProxyWhirl database")
    with pytest.raises(ValueError, match=r"proxies\.db already exists.*never overwrites"):
        write_sample_deployment(tmp_path, **SMALL)
    assert database.read_bytes() == b"a real ProxyWhirl database"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proxies.db"]


def test_refuses_to_write_into_existing_logs(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    rotated = logs / "proxywhirl.2026-01-01_00-00-00_000000.log.gz"
    rotated.write_bytes(b"old")
    with pytest.raises(ValueError, match=re.escape(f"{rotated} already exists")):
        write_sample_deployment(tmp_path, **SMALL)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["logs", rotated.name]
    assert rotated.read_bytes() == b"old"


def test_a_failed_run_leaves_nothing_behind(tmp_path: Path) -> None:
    (tmp_path / "logs").write_text("not a folder")  # the logs cannot be written
    with pytest.raises(FileExistsError, match="logs"):
        write_sample_deployment(tmp_path, **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"proxies": 0}, "proxies must be at least 1, got 0"),
        ({"days": 0}, "days must be at least 1, got 0"),
        ({"days": 5000}, "days must be at most 3660"),
        ({"validations_per_day": -1}, "validations_per_day must be at least 0, got -1"),
        ({"proxies": 2.5}, "proxies must be a whole number, got 2.5"),
        ({"seed": "7"}, "seed must be a whole number, got '7'"),
        ({"end_date": "2026-11-14"}, "end_date must be a date"),
        ({"end_date": datetime(2026, 11, 14)}, "end_date must be a date"),
        ({"end_date": date(1980, 1, 5)}, "out of range"),
    ],
)
def test_bad_arguments_are_refused_clearly(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        write_sample_deployment(tmp_path / "out", **{**SMALL, **changes})
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("proxies", "days", "validations_per_day"), [(1, 1, 0), (3, 2, 7), (12, 1, 40)]
)
def test_tiny_samples_are_consistent(
    tmp_path: Path, proxies: int, days: int, validations_per_day: int
) -> None:
    sample = write_sample_deployment(
        tmp_path,
        proxies=proxies,
        days=days,
        end_date=END,
        validations_per_day=validations_per_day,
    )
    assert sorted(p.name for p in sample.log_dir.iterdir()) == ["proxywhirl.log"]
    with closing(sqlite3.connect(f"file:{sample.database}?mode=ro", uri=True)) as connection:
        assert connection.execute("SELECT COUNT(*) FROM proxy_identities").fetchone() == (proxies,)
        count = connection.execute("SELECT COUNT(*) FROM validation_results").fetchone()[0]
        statuses = connection.execute("SELECT COUNT(*) FROM proxy_statuses").fetchone()[0]
    assert count == sample.validations == days * validations_per_day
    assert statuses <= proxies
    assert statuses >= (1 if validations_per_day else 0)  # a proxy checked from the first batch
    config = tomllib.loads(sample.config_path.read_text(encoding="utf-8"))
    assert any(entry.get("password") == LOST for entry in config["proxies"])
