"""Hostile files in ProxyWhirl's log folder: decompression bombs, symbolic links, FIFOs,
sockets, directories and files that vanish. Each is refused, named in the manifest, the
metadata and a WARNING, and the other files' records are exported exactly."""

from __future__ import annotations

import bz2
import copy
import gzip
import io
import json
import lzma
import os
import signal
import socket
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance

from export_assets.defs.exports.proxy_logs import ProxyLogsConfig, proxy_logs
from export_assets.lib.exports.manifest import ExportManifest
from export_assets.lib.source import SourceError
from export_assets.lib.source import logs as source_logs
from export_assets.lib.source.log_inflate import LogLimits
from export_assets.lib.source.logs import LogDay, LogSelection, day_bounds_us, open_log_day
from export_assets_tests.test_proxy_logs import (
    ALL_OF_THE_DAY,
    API,
    API_ZIP,
    LIVE,
    LIVE_LINES,
    PARTIAL,
    ROTATED,
    ROTATED_GZ,
    data_file,
    exported,
    loguru_line,
    run,
    triples,
)

DAY = date(2026, 11, 1)
MIB = 1 << 20
BOMB_GIB = 4
OUTSIDE_MARK = "OUTSIDE-THE-LOG-FOLDER-7f3a"


# --- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_instance() -> Iterator[DagsterInstance]:
    """One Dagster instance for the module's runs (each writes to its own tmp_path)."""
    with DagsterInstance.ephemeral() as test_instance:
        yield test_instance


@pytest.fixture(scope="session")
def gzip_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid 4 MB gzip file that inflates to 4 GiB of newlines, built once per session.

    Deflate after a full flush starts afresh, so one compressed MiB of newlines repeated is
    one valid deflate stream; only the CRC needs the 4 GiB (about 2 s of zlib.crc32).
    """
    path = tmp_path_factory.mktemp("bomb") / "bomb.log.gz"
    block = b"\n" * MIB
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunk = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush()
    blocks = BOMB_GIB * 1024
    crc = 0
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, (blocks * MIB) & 0xFFFFFFFF)
    with path.open("wb") as out:
        out.write(header)
        for _ in range(blocks):
            out.write(chunk)
        out.write(end + trailer)
    return path


def newlines(size: int) -> bytes:
    return b"\n" * size


def zip_bomb(path: Path, size: int = 16 * MIB) -> None:
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open(path.name.removesuffix(".zip"), "w") as member,
    ):
        for _ in range(size // MIB):
            member.write(newlines(MIB))


def tar_gz_bomb(path: Path, size: int = 16 * MIB) -> None:
    info = tarfile.TarInfo("bomb.log")
    info.size = size
    with tarfile.open(path, "w:gz") as archive:
        archive.addfile(info, io.BytesIO(newlines(size)))


BOMBS: dict[str, Callable[[Path], object]] = {
    "bomb.log.bz2": lambda path: path.write_bytes(bz2.compress(newlines(16 * MIB))),
    "bomb.log.xz": lambda path: path.write_bytes(lzma.compress(newlines(16 * MIB), preset=0)),
    "bomb.log.zip": zip_bomb,
    "bomb.log.tar.gz": tar_gz_bomb,
}


def write_good_logs(folder: Path) -> Path:
    """The log folder of test_proxy_logs: a rotated gzip, a zip of another sink, the live
    file (with malformed and partial lines) and a README; its answer is ALL_OF_THE_DAY."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ROTATED_GZ).write_bytes(gzip.compress("".join(ROTATED).encode(), mtime=0))
    with zipfile.ZipFile(folder / API_ZIP, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(API_ZIP.removesuffix(".zip"), "".join(API))
    (folder / LIVE).write_bytes(("".join(LIVE_LINES) + PARTIAL).encode())
    (folder / "README.txt").write_text("not a log\n")
    return folder


def outside_file(tmp_path: Path) -> Path:
    """A file outside the log folder holding loguru records of the day, marked."""
    outside = tmp_path / "elsewhere" / "secrets.log"
    outside.parent.mkdir()
    outside.write_text(
        loguru_line("2026-11-01T06:00:00", f"{OUTSIDE_MARK} root password is hunter2")
        + loguru_line("2026-11-01T07:00:00", f"{OUTSIDE_MARK} second record")
    )
    return outside


def read_day(folder: Path, limits: LogLimits | None = None) -> tuple[list[Any], LogDay]:
    """Every record of DAY as (source file, row), and the scanned day (closed)."""
    start, end = day_bounds_us(DAY)
    logs = open_log_day(folder, DAY, limits)
    try:
        rows = list(logs.rows(LogSelection(start, end)))
    finally:
        logs.close()
    return rows, logs


@pytest.fixture
def baseline(tmp_path: Path) -> list[Any]:
    """The good folder's records, read with nothing hostile beside them."""
    rows, logs = read_day(write_good_logs(tmp_path / "baseline"))
    expected = [(name, message) for _, name, message in ALL_OF_THE_DAY]
    expected[5] = (LIVE, "Fetched 10 proxies from http://alice:s3cret@lists.example/x")  # unmasked
    assert [(name, row[7]) for name, row in rows] == expected
    assert logs.refused == []
    return rows


def refused(logs: LogDay) -> dict[str, tuple[str, str, str]]:
    return {r.name: (r.reason, r.why, r.fix) for r in logs.refused}


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM interrupts a blocking open() in this thread."""

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still running after {seconds} s (a FIFO opened for reading?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def unix_socket(path: Path) -> Iterator[None]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
        yield
    finally:
        server.close()


# --- decompression bombs ----------------------------------------------------------------


def test_the_4_gib_gzip_bomb_is_refused_early_and_the_rest_is_exact(
    gzip_bomb: Path, tmp_path: Path, baseline: list[Any]
) -> None:
    assert 4_000_000 < gzip_bomb.stat().st_size < 4_500_000
    head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(
        gzip_bomb.read_bytes()[:20_000], 16 * MIB
    )
    assert head == newlines(16 * MIB)  # a real gzip stream of newlines (all 4 GiB: gzip -t)
    folder = write_good_logs(tmp_path / "logs")
    (folder / "proxywhirl.2026-11-01_06-00-00_000000.log.gz").symlink_to(gzip_bomb)
    bomb = folder / "bomb.log.gz"
    bomb.write_bytes(gzip_bomb.read_bytes())

    rows, logs = read_day(folder)

    assert rows == baseline
    reason, why, fix = refused(logs)["bomb.log.gz"]
    assert reason == "ratio"
    assert why.startswith("a decompression bomb: ")
    assert "more than max_compression_ratio 500x; reading stopped there" in why
    assert "the whole file is left out, none of its records are exported" in why
    assert "raise max_compression_ratio (proxy_logs run config)" in fix
    # Stopped within the first MiB of the 4 GiB (the floor is 64 KiB, reads are 64 KiB).
    inflated = int(why.split(" inflated to ")[1].split(" ")[0])
    assert inflated <= MIB
    assert refused(logs)["proxywhirl.2026-11-01_06-00-00_000000.log.gz"][0] == "symlink"
    assert "bomb.log.gz" not in [scan.name for scan in logs.scans]
    assert logs.facts()["totals"]["refused_files"] == 2


@pytest.mark.parametrize("name", list(BOMBS))
def test_bombs_of_every_codec_are_refused(name: str, tmp_path: Path, baseline: list[Any]) -> None:
    folder = write_good_logs(tmp_path / "logs")
    BOMBS[name](folder / name)

    rows, logs = read_day(folder)

    assert rows == baseline
    reason, why, _ = refused(logs)[name]
    assert (reason, why[:21]) == ("ratio", "a decompression bomb:")


def test_a_zip_of_entries_sharing_one_member_is_refused(
    tmp_path: Path, baseline: list[Any]
) -> None:
    """Overlapping entries: 2000 names for one member of ordinary records. Each read alone
    inflates ~10x; the file as a whole inflates ~2000 times more than its size."""
    kernel = "".join(
        loguru_line(f"2026-10-01T10:00:{second:02d}", f"shared record {second}")
        for second in range(60)
    )
    folder = write_good_logs(tmp_path / "logs")
    path = folder / "overlap.log.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("k", kernel)
        shared = archive.getinfo("k")
        for number in range(2000):
            entry = copy.copy(shared)
            entry.filename = f"{number}"
            archive.filelist.append(entry)
    assert len(kernel) * 2001 > 500 * path.stat().st_size

    rows, logs = read_day(folder)

    assert rows == baseline
    reason, why, _ = refused(logs)["overlap.log.zip"]
    assert reason == "ratio"
    inflated = int(why.split(" inflated to ")[1].split(" ")[0])
    assert inflated < 501 * path.stat().st_size + MIB


def test_a_bomb_with_forged_records_first_is_left_out_whole(
    tmp_path: Path, baseline: list[Any]
) -> None:
    forged = loguru_line("2026-11-01T09:00:00", "forged record before the bomb")
    folder = write_good_logs(tmp_path / "logs")
    (folder / "forged.log.gz").write_bytes(gzip.compress(forged.encode() + newlines(8 * MIB)))

    rows, logs = read_day(folder)

    assert rows == baseline
    assert "forged record" not in json.dumps([row[7] for _, row in rows])
    assert refused(logs)["forged.log.gz"][0] == "ratio"


def test_a_large_genuine_file_is_refused_by_the_size_limit_naming_it(
    tmp_path: Path, baseline: list[Any]
) -> None:
    folder = write_good_logs(tmp_path / "logs")
    records = "".join(
        loguru_line(f"2026-11-01T10:{minute:02d}:{second:02d}", f"genuine {minute} {second}")
        for minute in range(60)
        for second in range(60)
    ).encode()
    (folder / "big.log.gz").write_bytes(gzip.compress(records, mtime=0))
    limits = LogLimits(max_decompressed_bytes=len(records) // 2)

    rows, logs = read_day(folder, limits)

    assert rows == baseline
    reason, why, fix = refused(logs)["big.log.gz"]
    assert reason == "too_large"
    assert why.startswith(f"inflates to more than max_decompressed_bytes ({len(records) // 2} ")
    assert "raise max_decompressed_bytes (proxy_logs run config)" in fix

    # Raised above its size, the same file is exported whole.
    rows, logs = read_day(folder, LogLimits(max_decompressed_bytes=len(records)))
    assert logs.refused == []
    assert len(rows) == len(baseline) + 3600


def test_a_flood_of_one_message_is_not_a_bomb(tmp_path: Path) -> None:
    """The default ratio leaves genuine logs alone, even the most repetitive ones."""
    flood = "".join(
        loguru_line(f"2026-11-01T10:00:{second // 1000:02d}.{second % 1000:03d}", "cache miss")
        for second in range(5_000)
    ).encode()
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.log.gz").write_bytes(gzip.compress(flood, 9))
    (folder / "b.log.bz2").write_bytes(bz2.compress(flood, 9))
    (folder / "c.log.xz").write_bytes(lzma.compress(flood, preset=6))
    ratios = [len(flood) / (folder / name).stat().st_size for name in sorted(os.listdir(folder))]
    assert max(ratios) < 500

    rows, logs = read_day(folder)

    assert logs.refused == []
    assert len(rows) == 3 * 5_000


# --- links and files that are not regular ----------------------------------------------


def test_a_symlink_to_an_outside_file_is_not_followed(tmp_path: Path, baseline: list[Any]) -> None:
    outside = outside_file(tmp_path)
    folder = write_good_logs(tmp_path / "logs")
    (folder / "stolen.log").symlink_to(outside)
    (folder / "relative.log").symlink_to(Path("..") / "elsewhere" / "secrets.log")
    (folder / "zero.log").symlink_to("/dev/zero")
    (folder / "dangling.log.gz").symlink_to(tmp_path / "nowhere")

    rows, logs = read_day(folder)

    assert rows == baseline
    assert OUTSIDE_MARK not in json.dumps(rows)
    found = refused(logs)
    assert {name: found[name][0] for name in found} == {
        "dangling.log.gz": "symlink",
        "relative.log": "symlink",
        "stolen.log": "symlink",
        "zero.log": "symlink",
    }
    assert found["stolen.log"][1] == (
        f"a symbolic link to {outside}, not followed: logs are read only from regular "
        "files in the log folder"
    )
    assert "move or copy the file itself into the folder" in found["stolen.log"][2]


def test_fifos_sockets_and_directories_are_not_opened(tmp_path: Path, baseline: list[Any]) -> None:
    folder = write_good_logs(tmp_path / "logs")
    os.mkfifo(folder / "pipe.log")
    os.mkfifo(folder / "pipe.log.gz")
    (folder / "folder.log").mkdir()
    (folder / "folder.log" / "inner.log").write_text(API[0])
    with unix_socket(folder / "s.log"), deadline(20):
        rows, logs = read_day(folder)

    assert rows == baseline
    found = refused(logs)
    assert {name: found[name][1].split(",")[0] for name in found} == {
        "folder.log": "a directory",
        "pipe.log": "a FIFO (named pipe)",
        "pipe.log.gz": "a FIFO (named pipe)",
        "s.log": "a socket",
    }
    assert all(found[name][0] == "not_regular" for name in found)
    assert "rename it so that it does not end like a log file" in found["pipe.log"][2]


def swap_after_first_scan(monkeypatch: pytest.MonkeyPatch, change: Callable[[], None]) -> list[str]:
    """Run ``change`` right after the first file's scan, i.e. after the folder was listed
    and before the next file is opened: a deterministic race (a test hook, not a mock:
    the scan itself runs as it is)."""
    scanned: list[str] = []
    real_scan = source_logs._scan

    def scan_then_change(opened: Any, start_us: int, end_us: int) -> None:
        real_scan(opened, start_us, end_us)
        scanned.append(opened.path.name)
        if len(scanned) == 1:
            change()

    monkeypatch.setattr(source_logs, "_scan", scan_then_change)
    return scanned


def test_a_file_deleted_between_listing_and_opening_is_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, baseline: list[Any]
) -> None:
    folder = write_good_logs(tmp_path / "logs")
    swap_after_first_scan(monkeypatch, (folder / ROTATED_GZ).unlink)

    rows, logs = read_day(folder)

    assert rows == [row for row in baseline if row[0] != ROTATED_GZ]
    reason, why, fix = refused(logs)[ROTATED_GZ]
    assert reason == "vanished"
    assert why.startswith("disappeared between the folder's listing and its opening")
    assert fix == "if it held records of this day, export the partition again"


def test_a_rotated_file_compressed_meanwhile_is_read_from_its_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    rotated = "api.2026-11-01_00-00-00_000000.log"
    (folder / "a.log").write_text(LIVE_LINES[0])
    (folder / rotated).write_text("".join(API))
    (folder / f"{rotated}.gz").write_bytes(gzip.compress("".join(API).encode()))
    # Listed with its archive (then ignored as being compressed), gone when opened.
    swap_after_first_scan(monkeypatch, (folder / rotated).unlink)

    rows, logs = read_day(folder)

    assert [(name, row[7]) for name, row in rows] == [
        (f"{rotated}.gz", "GET /api/v1/health 200"),
        (f"{rotated}.gz", "not the api"),
        ("a.log", "Fetched 10 proxies from http://alice:s3cret@lists.example/x"),
    ]
    assert refused(logs)[rotated][0] == "vanished"


def test_a_symlink_or_fifo_swapped_in_after_the_listing_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, baseline: list[Any]
) -> None:
    outside = outside_file(tmp_path)
    folder = write_good_logs(tmp_path / "logs")
    # API_ZIP is scanned first; then the rotated file becomes a link and the live one a FIFO.

    def swap() -> None:
        (folder / ROTATED_GZ).unlink()
        (folder / ROTATED_GZ).symlink_to(outside)
        (folder / LIVE).unlink()
        os.mkfifo(folder / LIVE)

    swap_after_first_scan(monkeypatch, swap)
    with deadline(20):
        rows, logs = read_day(folder)

    assert rows == [row for row in baseline if row[0] == API_ZIP]
    found = refused(logs)
    assert (found[ROTATED_GZ][0], found[LIVE][0]) == ("symlink", "not_regular")
    assert found[LIVE][1].startswith("a FIFO (named pipe), not a regular file")


# --- through Dagster ------------------------------------------------------------------


def test_proxy_logs_refuses_every_hostile_file_and_exports_the_rest_exactly(
    gzip_bomb: Path, tmp_path: Path, shared_instance: DagsterInstance
) -> None:
    clean_exports = tmp_path / "clean-exports"
    assert run(write_good_logs(tmp_path / "clean"), clean_exports, shared_instance).success

    outside = outside_file(tmp_path)
    folder = write_good_logs(tmp_path / "logs")
    (folder / "proxywhirl.2026-10-30_00-00-00_000000.log.gz").write_bytes(gzip_bomb.read_bytes())
    zip_bomb(folder / "api.2026-10-30_00-00-00_000000.log.zip")
    (folder / "stolen.log").symlink_to(outside)
    os.mkfifo(folder / "pipe.log")
    (folder / "folder.log").mkdir()
    exports = tmp_path / "exports"
    with unix_socket(folder / "s.log"), deadline(60):
        result = run(folder, exports, shared_instance)
    assert result.success

    # The other files' records, exactly as without the hostile files.
    assert exported(exports) == exported(clean_exports)
    assert triples(exported(exports)) == ALL_OF_THE_DAY
    text = gzip.decompress(data_file(exports).read_bytes()).decode()
    assert OUTSIDE_MARK not in text

    expected = {
        "api.2026-10-30_00-00-00_000000.log.zip": "ratio",
        "folder.log": "not_regular",
        "pipe.log": "not_regular",
        "proxywhirl.2026-10-30_00-00-00_000000.log.gz": "ratio",
        "s.log": "not_regular",
        "stolen.log": "symlink",
    }
    manifest = ExportManifest.from_json(data_file(exports).with_name("_manifest.json").read_bytes())
    facts = manifest.source
    assert {entry["name"]: entry["reason"] for entry in facts["refused_files"]} == expected
    assert facts["totals"]["refused_files"] == len(expected)
    assert facts["limits"] == {"max_decompressed_bytes": 1 << 30, "max_compression_ratio": 500.0}
    assert [entry["name"] for entry in facts["files"]] == [API_ZIP, ROTATED_GZ, LIVE]

    event = shared_instance.get_latest_materialization_event(proxy_logs.key)
    assert event is not None
    assert event.asset_materialization is not None
    metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert metadata["refused_log_file_count"] == len(expected)
    assert metadata["refused_log_files"] == facts["refused_files"]

    warnings = [
        entry.user_message
        for entry in shared_instance.all_logs(result.run_id)
        if entry.level == "WARNING" or entry.level == 30
    ]
    for name in expected:
        (line,) = [w for w in warnings if w.startswith(f"{name} in {folder}: refused, ")]
        assert "; " in line  # why; what to do
    (bomb_line,) = [w for w in warnings if w.startswith("proxywhirl.2026-10-30")]
    assert "a decompression bomb" in bomb_line
    assert bomb_line.endswith(
        "if it is a genuine ProxyWhirl log, raise max_compression_ratio (proxy_logs run "
        "config) and export the partition again"
    )


def test_the_limits_are_run_config(tmp_path: Path, shared_instance: DagsterInstance) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    records = "".join(
        loguru_line(f"2026-11-01T10:00:{second:02d}", "cache miss") for second in range(60)
    ).encode()
    (folder / "flood.log.gz").write_bytes(gzip.compress(records * 40, mtime=0))
    ratio = len(records * 40) / (folder / "flood.log.gz").stat().st_size
    assert 20 < ratio < 500

    strict = tmp_path / "strict"
    result = run(folder, strict, shared_instance, config={"max_compression_ratio": 10})
    assert result.success
    assert exported(strict) == []
    manifest = json.loads(data_file(strict).with_name("_manifest.json").read_bytes())
    (entry,) = manifest["source"]["refused_files"]
    assert (entry["name"], entry["reason"]) == ("flood.log.gz", "ratio")
    assert "more than max_compression_ratio 10x" in entry["why"]

    lenient = tmp_path / "lenient"
    assert run(folder, lenient, shared_instance).success
    assert len(exported(lenient)) == 60 * 40


def test_config_refuses_limits_that_make_no_sense() -> None:
    with pytest.raises(ValueError, match="max_compression_ratio"):
        ProxyLogsConfig(max_compression_ratio=1)
    with pytest.raises(ValueError, match="max_decompressed_bytes"):
        ProxyLogsConfig(max_decompressed_bytes=0)


def test_a_bomb_that_changed_between_the_passes_fails_naming_it(tmp_path: Path) -> None:
    """A file read whole in pass 1 and a bomb in pass 2 (rewritten in place) is not
    exported from: the export fails and says to export again."""
    folder = tmp_path / "logs"
    folder.mkdir()
    path = folder / "x.log.gz"
    data = gzip.compress("".join(API).encode(), mtime=0)
    path.write_bytes(data)
    start, end = day_bounds_us(DAY)
    logs = open_log_day(folder, DAY)
    try:
        with path.open("r+b") as rewriting:  # same inode, new content
            rewriting.write(gzip.compress(b"x" * 4 * MIB))  # one long line
        with pytest.raises(
            SourceError, match=r"x\.log\.gz could not be read again: a decompression bomb"
        ):
            list(logs.rows(LogSelection(start, end)))
    finally:
        logs.close()
