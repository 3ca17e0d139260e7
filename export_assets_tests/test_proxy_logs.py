"""proxy_logs through Dagster on hand-written loguru files with known answers, and on the sample."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import tarfile
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, materialize

from export_assets.defs.exports.proxy_logs import ProxyLogsConfig, proxy_logs, window_us
from export_assets.lib.exports.manifest import ExportManifest
from export_assets.lib.sample import SampleDeployment
from export_assets.lib.source import SourceError
from export_assets.lib.source import logs as source_logs
from export_assets.lib.source.log_records import LOG_SCHEMA
from export_assets.lib.source.logs import LogSelection, day_bounds_us, open_log_day
from export_assets_tests.conftest import configured, export_resources, proxy_credentials

DAY = "2026-11-01"
ROTATED_GZ = "proxywhirl.2026-10-31_12-00-00_000000.log.gz"
API_ZIP = "api.2026-11-01_04-00-00_000000.log.zip"
LIVE = "proxywhirl.log"
DB_URL = "sqlite+aiosqlite://admin:hunter2@db.internal/proxies"
SECRETS = ("alice", "s3cret", "bob", "pw0rd", "admin", "hunter2", "carol", "tb-secret")
ODD_MESSAGE = 'Saved 3 rows\u2028second line\x85third, quoted "q" and tab\t'


def loguru_line(
    at: str,
    message: str,
    *,
    level: tuple[str, int] = ("INFO", 20),
    name: str | None = "proxywhirl.fetchers",
    function: str = "fetch",
    line: int = 10,
    extra: Any = ...,
    exception: tuple[str, str] | None = None,
    offset_hours: int = 0,
    traceback: str = "",
) -> str:
    """One record as loguru's serialize=True sink writes it (``record.time`` last)."""
    moment = datetime.fromisoformat(at).replace(tzinfo=UTC)
    local = moment.astimezone(timezone(timedelta(hours=offset_hours)))
    module = (name or "__main__").rsplit(".", 1)[-1]
    record = {
        "elapsed": {"repr": "1:00:00", "seconds": 3600.0},
        "exception": None
        if exception is None
        else {"type": exception[0], "value": exception[1], "traceback": bool(traceback)},
        "extra": {} if extra is ... else extra,  # None: a null extra
        "file": {"name": f"{module}.py", "path": f"/opt/proxywhirl/{module}.py"},
        "function": function,
        "level": {"icon": "*", "name": level[0], "no": level[1]},
        "line": line,
        "message": message,
        "module": module,
        "name": name,
        "process": {"id": 4242, "name": "MainProcess"},
        "thread": {"id": 1400, "name": "MainThread"},
        "time": {"repr": str(local), "timestamp": local.timestamp()},
    }
    text = f"{local:%Y-%m-%d %H:%M:%S} | {level[0]:<8} | {name}:{function}:{line} - {message}\n"
    return json.dumps({"text": text + traceback, "record": record}, ensure_ascii=False) + "\n"


WARNING, ERROR = ("WARNING", 30), ("ERROR", 40)

ROTATED = [
    loguru_line("2026-10-31T12:00:00", "rotated file starts, the day before"),
    loguru_line("2026-10-31T23:59:59.999", "last of the day before", level=WARNING),
    loguru_line("2026-11-01T00:00:00", "first of the day", name="proxywhirl.rotator"),
    loguru_line(
        "2026-11-01T05:00:00",
        "Failed to save proxies",
        level=ERROR,
        name="proxywhirl.storage",
        exception=("OperationalError", f"cannot open {DB_URL}"),
        extra={"database": DB_URL},
        traceback="Traceback:\n  proxy_url = 'http://carol:tb-secret@10.0.0.9:3128'\n",
    ),
    loguru_line(
        "2026-11-01T11:59:59.5",
        "GET /api/v1/proxies 200",
        name="proxywhirl.api.core",
        offset_hours=1,
    ),
]
API = [
    loguru_line("2026-11-01T05:00:00", "GET /api/v1/health 200", name="proxywhirl.api.core"),
    loguru_line("2026-11-01T08:00:00", "not the api", level=WARNING, name="proxywhirl.apix"),
]
LIVE_LINES = [
    loguru_line(
        "2026-11-01T12:00:00.000001",
        "Fetched 10 proxies from http://alice:s3cret@lists.example/x",
        extra={
            "source": {"url": "socks5://bob:pw0rd@10.0.0.1:1080", "name": "list"},
            "attempt": 1,
            "note": None,
        },
    ),
    "2026-11-01 12:00:01.000 | INFO     | proxywhirl.cli:main:88 - Starting ProxyWhirl\n",
    '{"record": {"message": "no time, no level"}}\n',
    loguru_line("2026-11-01T13:00:00", ODD_MESSAGE, level=("SUCCESS", 25), name="proxywhirl.api"),
    # Written after the 13:00 record by a racing thread: out of order in the file.
    loguru_line("2026-11-01T12:59:59", "cache get miss", name="proxywhirl.cache"),
    loguru_line(
        "2026-11-01T23:30:00",
        "GET /api/v1/proxies/rotate 200",
        name="proxywhirl.api.core",
        offset_hours=1,
        extra=None,
    ),
    loguru_line("2026-11-01T23:59:59.999", "last of the day", level=("CRITICAL", 50), name=None),
    loguru_line("2026-11-02T00:00:00", "first of the next day"),
]
PARTIAL = loguru_line("2026-11-02T00:00:01", "still being written")[:70]

# (time, source file, message) of the day's records, in the order they must be exported.
ALL_OF_THE_DAY = [
    ("2026-11-01T00:00:00.000000Z", ROTATED_GZ, "first of the day"),
    ("2026-11-01T05:00:00.000000Z", API_ZIP, "GET /api/v1/health 200"),
    ("2026-11-01T05:00:00.000000Z", ROTATED_GZ, "Failed to save proxies"),
    ("2026-11-01T08:00:00.000000Z", API_ZIP, "not the api"),
    ("2026-11-01T11:59:59.500000Z", ROTATED_GZ, "GET /api/v1/proxies 200"),
    (
        "2026-11-01T12:00:00.000001Z",
        LIVE,
        "Fetched 10 proxies from http://***:***@lists.example/x",
    ),
    ("2026-11-01T12:59:59.000000Z", LIVE, "cache get miss"),
    ("2026-11-01T13:00:00.000000Z", LIVE, ODD_MESSAGE),
    ("2026-11-01T23:30:00.000000Z", LIVE, "GET /api/v1/proxies/rotate 200"),
    ("2026-11-01T23:59:59.999000Z", LIVE, "last of the day"),
]


@pytest.fixture(scope="module")
def shared_instance() -> Iterator[DagsterInstance]:
    """One Dagster instance for the module's runs (each writes to its own tmp_path): an
    instance takes longer to set up than a run of these small exports."""
    with DagsterInstance.ephemeral() as test_instance:
        yield test_instance


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    """A log folder: a rotated gzip file and a zip of another sink overlapping the live file."""
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / ROTATED_GZ).write_bytes(gzip.compress("".join(ROTATED).encode(), mtime=0))
    with zipfile.ZipFile(folder / API_ZIP, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(API_ZIP.removesuffix(".zip"), "".join(API))
    (folder / LIVE).write_bytes(("".join(LIVE_LINES) + PARTIAL).encode())
    (folder / "README.txt").write_text("not a log\n")
    return folder


def run(
    log_dir: Path,
    exports: Path,
    instance: DagsterInstance,
    partition: str = DAY,
    config: dict[str, Any] | None = None,
    *,
    raise_on_error: bool = True,
) -> Any:
    resources = export_resources(log_dir.parent / "proxies.db", exports, log_dir=str(log_dir))
    return materialize(
        [configured(proxy_logs, config)],
        partition_key=partition,
        resources=resources,
        instance=instance,
        raise_on_error=raise_on_error,
    )


def data_file(exports: Path, partition: str = DAY) -> Path:
    return exports / "proxy_logs" / f"dt={partition}" / f"proxy_logs-{partition}.jsonl.gz"


def exported(exports: Path, partition: str = DAY) -> list[dict[str, Any]]:
    """The export's rows, read with gzip and json; lines split on \\n only."""
    text = gzip.decompress(data_file(exports, partition).read_bytes()).decode("utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.split("\n")[:-1]]


def triples(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(row["time"], row["source_file"], row["message"]) for row in rows]


def failure_message(result: Any) -> str:
    error = result.get_step_failure_events()[0].event_specific_data.error
    return str(error.cause.message if error.cause is not None else error.message)


def test_the_days_records_from_every_file_merged_in_time_order(
    log_dir: Path, tmp_path: Path, shared_instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    assert run(log_dir, exports, shared_instance).success

    rows = exported(exports)
    assert triples(rows) == ALL_OF_THE_DAY
    assert list(rows[0]) == LOG_SCHEMA.names
    assert rows[0] == {
        "time": "2026-11-01T00:00:00.000000Z",
        "level": "INFO",
        "level_no": 20,
        "component": "proxywhirl.rotator",
        "module": "rotator",
        "function": "fetch",
        "line": 10,
        "message": "first of the day",
        "exception_type": None,
        "exception_value": None,
        "extra": "{}",
        "process_id": 4242,
        "thread_name": "MainThread",
        "source_file": ROTATED_GZ,
    }
    failed = rows[2]
    assert (failed["level"], failed["level_no"]) == ("ERROR", 40)
    assert failed["exception_type"] == "OperationalError"
    assert failed["exception_value"] == (
        "cannot open sqlite+aiosqlite://***:***@db.internal/proxies"
    )
    assert json.loads(failed["extra"]) == {
        "database": "sqlite+aiosqlite://***:***@db.internal/proxies"
    }
    fetched = rows[5]
    assert fetched["extra"] == (
        '{"attempt": 1, "note": null, "source": {"name": "list", '
        '"url": "socks5://***:***@10.0.0.1:1080"}}'
    )
    assert rows[7]["message"] == ODD_MESSAGE  # U+2028, U+0085, quotes and a tab intact
    assert rows[8]["extra"] is None  # a null extra stays null, not the text "null" or "{}"
    assert rows[9]["component"] is None  # a record logged with no __name__

    text = gzip.decompress(data_file(exports).read_bytes()).decode()
    assert not [secret for secret in SECRETS if secret in text]
    assert "Traceback" not in text  # loguru's text (with the traceback) is not exported


def test_malformed_and_partial_lines_are_counted_in_manifest_and_metadata(
    log_dir: Path, tmp_path: Path, shared_instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    assert run(log_dir, exports, shared_instance).success

    manifest = ExportManifest.from_json(data_file(exports).with_name("_manifest.json").read_bytes())
    assert manifest.total_rows == len(ALL_OF_THE_DAY)
    facts = manifest.source
    assert facts["log_dir"] == str(log_dir)
    assert facts["ignored_files"] == [{"name": "README.txt", "why": "not a log file"}]
    files = {entry["name"]: entry for entry in facts["files"]}
    assert list(files) == [API_ZIP, ROTATED_GZ, LIVE]
    counts = ("lines", "records_in_day", "malformed", "partial")
    assert [tuple(files[name][key] for key in counts) for name in files] == [
        (2, 2, 0, 0),
        (5, 3, 0, 0),
        (9, 5, 2, 1),
    ]
    assert files[LIVE]["malformed_examples"] == [
        {"line": 2, "reason": "not JSON"},
        {"line": 3, "reason": "loguru record with no time.timestamp"},
    ]
    assert files[LIVE]["max_lateness_us"] == 1_000_000
    assert files[ROTATED_GZ]["compression"] == "gzip"
    assert files[ROTATED_GZ]["earliest"] == "2026-10-31T12:00:00.000000Z"
    assert facts["totals"] == {
        "files": 3,
        "lines": 16,
        "records_in_day": 10,
        "malformed": 2,
        "partial": 1,
        "unreadable_files": 0,
        "refused_files": 0,
    }
    assert facts["refused_files"] == []
    assert facts["limits"] == {
        "max_decompressed_bytes": 1 << 30,
        "max_compression_ratio": 500.0,
    }

    event = shared_instance.get_latest_materialization_event(proxy_logs.key)
    assert event is not None
    assert event.asset_materialization is not None
    metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    # The asset's own metadata and the IO manager's arrive together.
    assert metadata["dagster/partition_row_count"] == len(ALL_OF_THE_DAY)
    assert metadata["malformed_lines"] == 2
    assert metadata["partial_lines"] == 1
    assert metadata["records_in_day"] == 10
    log_files = metadata["log_files"]
    assert isinstance(log_files, list)
    assert log_files[2] == {
        "name": LIVE,
        "lines": 9,
        "records_in_day": 5,
        "malformed": 2,
        "partial": 1,
    }
    assert metadata["sha256"] == manifest.files[0].sha256


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        pytest.param(
            {"min_level": "WARNING"},
            ["Failed to save proxies", "not the api", "last of the day"],
            id="min_level",
        ),
        pytest.param(
            {"components": ["proxywhirl.api"]},
            [
                "GET /api/v1/health 200",
                "GET /api/v1/proxies 200",
                ODD_MESSAGE,
                "GET /api/v1/proxies/rotate 200",
            ],
            id="components-prefix",
        ),
        pytest.param(
            {"start_time": "05:00", "end_time": "2026-11-01T12:00:00.000001Z"},
            [
                "GET /api/v1/health 200",
                "Failed to save proxies",
                "not the api",
                "GET /api/v1/proxies 200",
            ],
            id="start-end-time",
        ),
        pytest.param(
            {"contains": "GET"},
            ["GET /api/v1/health 200", "GET /api/v1/proxies 200", "GET /api/v1/proxies/rotate 200"],
            id="contains-case-sensitive",
        ),
        pytest.param({"contains": "s3cret"}, [], id="contains-sees-masked-messages"),
    ],
)
def test_filters_select_exactly(
    log_dir: Path,
    tmp_path: Path,
    shared_instance: DagsterInstance,
    config: dict[str, Any],
    expected: list[str],
) -> None:
    exports = tmp_path / "exports"
    assert run(log_dir, exports, shared_instance, config=config).success
    assert [row["message"] for row in exported(exports)] == expected


def test_a_timestamp_outside_the_day_is_refused_naming_it(
    log_dir: Path, tmp_path: Path, shared_instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    result = run(
        log_dir,
        exports,
        shared_instance,
        config={"start_time": "2026-11-02T01:00:00Z"},
        raise_on_error=False,
    )
    assert not result.success
    assert "start_time '2026-11-02T01:00:00Z'" in failure_message(result)
    assert "not inside the partition's day 2026-11-01" in failure_message(result)
    assert not exports.exists()


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("25:00", None, "start_time '25:00' is neither a UTC time of day"),
        ("yesterday", None, "start_time 'yesterday' is neither"),
        (None, "2026-10-31T23:00:00+00:00", "end_time '2026-10-31T23:00:00+00:00'"),
        ("2026-11-01T00:30:00+01:00", None, "start_time '2026-11-01T00:30:00+01:00'"),
        ("12:00", "11:00", "start_time '12:00' is not before end_time '11:00'"),
    ],
)
def test_bad_windows_name_the_value(start: str | None, end: str | None, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("+", r"\+")):
        window_us(date(2026, 11, 1), start, end)


def test_window_forms() -> None:
    day_start, day_end = day_bounds_us(date(2026, 11, 1))
    hour = 3_600_000_000
    assert window_us(date(2026, 11, 1), None, None) == (day_start, day_end)
    assert window_us(date(2026, 11, 1), "01:30:15", "2026-11-02T00:00:00Z") == (
        day_start + hour + 30 * 60_000_000 + 15_000_000,
        day_end,
    )
    # A naive timestamp is UTC; an offset is converted.
    assert window_us(date(2026, 11, 1), "2026-11-01T02:00:00", "2026-11-01T05:00:00+02:00") == (
        day_start + 2 * hour,
        day_start + 3 * hour,
    )


def test_a_missing_log_dir_fails_naming_path_and_variable(
    tmp_path: Path, shared_instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    result = run(tmp_path / "absent", exports, shared_instance, raise_on_error=False)
    assert not result.success
    message = failure_message(result)
    assert f"ProxyWhirl log folder {tmp_path / 'absent'} does not exist" in message
    assert "PROXYWHIRL_LOG_DIR" in message
    assert not exports.exists()


def test_an_empty_log_dir_gives_an_empty_export(
    tmp_path: Path, shared_instance: DagsterInstance
) -> None:
    (tmp_path / "logs").mkdir()
    exports = tmp_path / "exports"
    assert run(tmp_path / "logs", exports, shared_instance).success
    assert exported(exports) == []
    manifest = json.loads(data_file(exports).with_name("_manifest.json").read_bytes())
    assert manifest["total_rows"] == 0
    assert manifest["source"]["files"] == []
    assert manifest["source"]["totals"]["lines"] == 0


# --- the source alone: other codecs, broken and changing files ----------------------


def day_rows(log_dir: Path, day: date = date(2026, 11, 1)) -> list[tuple[str, str]]:
    start, end = day_bounds_us(day)
    logs = open_log_day(log_dir, day)
    try:
        return [(name, row[7]) for name, row in logs.rows(LogSelection(start, end))]
    finally:
        logs.close()


def test_bz2_xz_tar_and_logrotate_names_are_read(tmp_path: Path) -> None:
    data = "".join(API).encode()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log.bz2").write_bytes(bz2.compress(data))
    (logs / "b.log.xz").write_bytes(lzma.compress(data))
    (tmp_path / "member.log").write_bytes(data)
    with tarfile.open(logs / "c.log.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "member.log", arcname="member.log")
    (logs / "d.log.1").write_bytes(data)  # logrotate's naming
    names = ["a.log.bz2", "b.log.xz", "c.log.tar.gz", "d.log.1"]
    assert day_rows(logs) == [(name, "GET /api/v1/health 200") for name in names] + [
        (name, "not the api") for name in names
    ]


def test_an_overlong_line_is_malformed_not_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source_logs, "MAX_LINE_BYTES", 1000)
    long_line = loguru_line("2026-11-01T06:00:00", "x" * 2000)
    (tmp_path / LIVE).write_text(API[0] + long_line + API[1])
    assert [message for _, message in day_rows(tmp_path)] == [
        "GET /api/v1/health 200",
        "not the api",
    ]
    logs = open_log_day(tmp_path, date(2026, 11, 1))
    logs.close()
    assert logs.scans[0].malformed_examples == [{"line": 2, "reason": "longer than 1000 bytes"}]


def test_config_refuses_an_empty_component_list() -> None:
    with pytest.raises(ValueError, match="components is empty"):
        ProxyLogsConfig(components=[])
    with pytest.raises(ValueError, match="end_time 'noon' is neither"):
        ProxyLogsConfig(end_time="noon")


def test_a_corrupt_gzip_is_reported_and_what_was_read_is_kept(tmp_path: Path) -> None:
    whole = gzip.compress("".join(ROTATED).encode(), mtime=0)
    (tmp_path / "x.log.gz").write_bytes(whole[: len(whole) - 30])  # cut short
    logs = open_log_day(tmp_path, date(2026, 11, 1))
    logs.close()
    (scan,) = logs.scans
    assert scan.error is not None
    assert scan.error.startswith(f"stopped after line {scan.lines}: EOFError")
    assert logs.facts()["totals"]["unreadable_files"] == 1


def test_a_rotated_file_being_compressed_is_read_once(tmp_path: Path) -> None:
    data = "".join(API).encode()
    rotated = "api.2026-11-01_00-00-00_000000.log"
    (tmp_path / rotated).write_bytes(data)
    (tmp_path / f"{rotated}.gz").write_bytes(gzip.compress(data)[:40])  # still being written
    assert day_rows(tmp_path) == [
        (rotated, "GET /api/v1/health 200"),
        (rotated, "not the api"),
    ]
    logs = open_log_day(tmp_path, date(2026, 11, 1))
    logs.close()
    assert logs.ignored == [{"name": f"{rotated}.gz", "why": f"being compressed from {rotated}"}]


def test_a_live_file_growing_between_the_passes_is_read_as_first_seen(tmp_path: Path) -> None:
    live = tmp_path / LIVE
    live.write_text("".join(LIVE_LINES[:1]) + PARTIAL)
    start, end = day_bounds_us(date(2026, 11, 1))
    logs = open_log_day(tmp_path, date(2026, 11, 1))
    with live.open("a") as appending:  # ProxyWhirl finishes the line and writes on
        appending.write("\n" + LIVE_LINES[3])
    assert len(list(logs.rows(LogSelection(start, end)))) == 1
    logs.close()


def test_a_file_replaced_between_the_passes_fails_the_export(tmp_path: Path) -> None:
    live = tmp_path / LIVE
    live.write_text("".join(LIVE_LINES))
    start, end = day_bounds_us(date(2026, 11, 1))
    logs = open_log_day(tmp_path, date(2026, 11, 1))
    with live.open("r+b") as rewriting:  # truncated in place (logrotate's copytruncate)
        rewriting.truncate(0)
    with pytest.raises(SourceError, match="changed while it was exported"):
        list(logs.rows(LogSelection(start, end)))
    logs.close()


# --- the sample deployment ------------------------------------------------------------


def test_every_sample_day_exports_without_a_credential(
    sample_deployment: SampleDeployment, tmp_path: Path, shared_instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    secrets = proxy_credentials(sample_deployment.database, sample_deployment.env_file)
    assert secrets
    days = (sample_deployment.last_day - sample_deployment.first_day).days + 1
    # Every day and the day after, which has no records yet, in one run over the range (as a
    # backfill runs them); each day is its own partition.
    partitions = [
        (sample_deployment.first_day + timedelta(days=offset)).isoformat()
        for offset in range(days + 1)
    ]
    resources = export_resources(
        sample_deployment.database, exports, log_dir=str(sample_deployment.log_dir)
    )
    ranged = materialize(
        [proxy_logs],
        resources=resources,
        instance=shared_instance,
        tags={
            "dagster/asset_partition_range_start": partitions[0],
            "dagster/asset_partition_range_end": partitions[-1],
        },
    )
    assert ranged.success
    total = 0
    for partition in partitions:
        text = gzip.decompress(data_file(exports, partition).read_bytes()).decode()
        assert not [secret for secret in secrets if secret in text]
        rows = exported(exports, partition)
        keys = [(r["time"], r["source_file"]) for r in rows]
        assert keys == sorted(keys)
        assert all(row["time"].startswith(partition) for row in rows)
        total += len(rows)
    # Every complete record of the sample is exported once, in the partition of its day.
    assert total == sample_deployment.log_records

    # Re-exporting a day on its own gives the same bytes.
    first = data_file(exports, sample_deployment.last_day.isoformat())
    before = first.read_bytes()
    assert run(
        sample_deployment.log_dir, exports, shared_instance, sample_deployment.last_day.isoformat()
    ).success
    assert first.read_bytes() == before
