"""Benchmark: export a big day with this project, with pandas, and with the shell floor.

Every contender runs as its own child process; wall time around it, CPU time and peak RSS
of the whole process tree from ``os.wait4``. Prints one table, PASS/MISS per target, and
writes it to ``bench/results/latest.md``. ``make bench`` (1M rows), ``make bench-large``
(1M and 10M). See bench/README.md.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import zstandard

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DAY = date(2026, 11, 20)
PROXIES = 2000
EVENT_COLUMNS = "id, proxy_url, validated_at, is_valid, response_time_ms, error_type, error_message"
FORMATS = ("csv.gz", "csv.zst", "jsonl.gz", "parquet")
MIB = 1024 * 1024

# Targets of issue #9 (see bench/README.md).
TARGET_FLOOR_FACTOR = 1.5
TARGET_PANDAS_SPEEDUP = 2.0
TARGET_PEAK_MIB = 300.0
TARGET_LARGE_RSS_GROWTH = 1.10
TARGET_RATIO = 0.75
TARGET_METRICS_FACTOR = 2.0
TARGET_INITIATION_MS = 100.0


@dataclass
class Measure:
    """One contender's run: what it is and what it cost."""

    rows: int
    tool: str
    output: str
    wall: float
    cpu: float
    peak_mib: float
    out_bytes: int
    plain_bytes: int | None  # uncompressed size of a compressed text output


# --- data -----------------------------------------------------------------------------


def deployment(data: Path, rows: int) -> Path:
    """The cached sample deployment with ``rows`` validations on DAY; generated once."""
    folder = data / f"rows-{rows}"
    database = folder / "proxies.db"
    if database.is_file():
        return database
    staging = data / f".rows-{rows}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    print(f"generating {rows:,} validations in {folder} (once) ...", flush=True)
    subprocess.run(  # noqa: S603
        [
            str(BIN / "export-assets"),
            "sample-data",
            "--out",
            str(staging),
            "--proxies",
            str(min(PROXIES, max(10, rows // 100))),
            "--days",
            "1",
            "--validations-per-day",
            str(rows),
            "--end-date",
            DAY.isoformat(),
            "--seed",
            "11",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    staging.rename(folder)
    return database


def day_query() -> str:
    """The day's validation results in id order, as pandas and sqlite3 are given it."""
    start, end = DAY.isoformat(), (DAY + timedelta(days=1)).isoformat()
    return (
        f"SELECT {EVENT_COLUMNS} FROM validation_results"
        f" WHERE validated_at >= '{start}' AND validated_at < '{end}' ORDER BY id"
    )


# --- measuring ------------------------------------------------------------------------


def measure(
    command: Sequence[str], env: dict[str, str] | None = None
) -> tuple[float, float, float]:
    """Run ``command``; its wall seconds, CPU seconds and peak RSS (MiB) of the process tree.

    Linux's wait4 reports the child and every descendant it waited for (a shell pipeline's
    processes too): CPU is their sum, peak RSS the largest of them. The child's output goes
    to a file, shown when it fails.
    """
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log)  # noqa: S603
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            log.seek(0)
            tail = log.read()[-4000:].decode(errors="replace")
            raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}:\n{tail}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def plain_size(path: Path) -> int | None:
    """Bytes of the decompressed content of a .gz or .zst file (None for others)."""
    total = 0
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(4 * MIB):
                total += len(chunk)
        return total
    if path.suffix == ".zst":
        with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as stream:
            while chunk := stream.read(4 * MIB):
                total += len(chunk)
        return total
    return None


REPEAT = 1  # runs per contender (--repeat); the fastest is reported


def run(
    rows: int,
    tool: str,
    output: Path,
    command: Sequence[str],
    env: dict[str, str] | None = None,
    *,
    repeat: int | None = None,
) -> Measure:
    """Measure one contender writing ``output``: the fastest of REPEAT runs (the least
    disturbed by whatever else the machine does), with the largest peak RSS of them."""
    repeat = REPEAT if repeat is None else repeat
    print(f"  {rows:>11,}  {tool:<48} ...", end="", flush=True)
    runs = [measure(command, env) for _ in range(repeat)]
    wall, cpu, _ = min(runs)
    peak = max(run[2] for run in runs)
    print(f" {wall:6.2f} s  {cpu:6.2f} s CPU  {peak:6.0f} MiB", flush=True)
    size = output.stat().st_size
    return Measure(rows, tool, output.name, wall, cpu, peak, size, plain_size(output))


def dagster_env(database: Path, destination: Path, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PROXYWHIRL_DB=str(database),
        EXPORT_DESTINATION=str(destination),
        DAGSTER_HOME=str(home),
        EXPORT_PARTITION_START="2026-01-01",
    )
    return env


def exported(destination: Path, asset: str, extension: str) -> Path:
    day = DAY.isoformat()
    return destination / asset / f"dt={day}" / f"{asset}-{day}.{extension}"


def contenders(
    database: Path, rows: int, work: Path, formats: Sequence[str], cli: bool
) -> list[Measure]:
    """Every contender on one database."""
    results: list[Measure] = []
    me = [sys.executable, str(Path(__file__).resolve())]
    query = day_query()
    for codec, compressor, options in (("gz", "gzip -6", "-n"), ("zst", "zstd -3", "-q -c")):
        out = work / f"floor.csv.{codec}"
        pipeline = (
            f"set -o pipefail; sqlite3 -readonly -csv -header '{database}' \"{query}\""
            f" | {compressor} {options} > '{out}'"
        )
        floor = f"floor: sqlite3 -csv piped to {compressor}"
        results.append(run(rows, floor, out, ["bash", "-c", pipeline]))
    for extension in ("csv.gz", "parquet"):
        out = work / f"pandas.{extension}"
        pandas = f"pandas: read_sql + to_{extension.split('.')[0]}"
        results.append(run(rows, pandas, out, [*me, "pandas", str(database), str(out)]))
    for extension in formats:
        destination = work / f"inproc-{extension}"
        results.append(
            run(
                rows,
                f"export_assets materialize() {extension}",
                exported(destination, "validation_events", extension),
                [
                    *me,
                    "materialize",
                    str(database),
                    str(destination),
                    "validation_events",
                    extension,
                ],
            )
        )
    destination = work / "metrics"
    results.append(
        run(
            rows,
            "export_assets proxy_metrics csv.gz",
            exported(destination, "proxy_metrics", "csv.gz"),
            [*me, "materialize", str(database), str(destination), "proxy_metrics", "csv.gz"],
        )
    )
    if cli:
        destination = work / "cli"
        home = Path(tempfile.mkdtemp(prefix="dagster-home-", dir=work))
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        command = [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "export_assets.definitions",
            "--select",
            "validation_events",
            "--partition",
            DAY.isoformat(),
        ]
        results.append(
            run(
                rows,
                "export_assets `dagster asset materialize` csv.gz",
                exported(destination, "validation_events", "csv.gz"),
                command,
                dagster_env(database, destination, home),
                repeat=1,  # with its checks it takes minutes: once
            )
        )
    return results


# --- children -------------------------------------------------------------------------


def child_pandas(database: str, out: str) -> None:
    """The baseline a pandas user writes."""
    import sqlite3

    import pandas as pd

    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    frame = pd.read_sql(day_query(), connection)
    if out.endswith(".csv.gz"):
        frame.to_csv(
            out, index=False, compression={"method": "gzip", "compresslevel": 6, "mtime": 0}
        )
    else:
        frame.to_parquet(out)
    connection.close()


def child_materialize(database: str, destination: str, asset: str, extension: str) -> None:
    """One partition of ``asset`` through ``dagster.materialize`` in this process."""
    from dagster import DagsterInstance, materialize

    from export_assets.assets import EXPORT_ASSETS
    from export_assets.exports import ExportIOManager, ExportStore
    from export_assets.source import ProxyWhirlSource

    fmt, _, codec = extension.partition(".")
    config: dict[str, Any] = {
        "format": fmt,
        "compression": {"": "none", "gz": "gzip", "zst": "zstd"}[codec],
    }
    store = ExportStore(destination=destination)
    (definition,) = [a for a in EXPORT_ASSETS if a.key.path[-1] == asset]
    result = materialize(
        [definition],
        partition_key=DAY.isoformat(),
        instance=DagsterInstance.ephemeral(),
        resources={
            "proxywhirl": ProxyWhirlSource(database=database),
            "export_store": store,
            "io_manager": ExportIOManager(store=store),
        },
        run_config={"ops": {asset: {"config": config}}},
    )
    if not result.success:
        raise SystemExit(f"materialize of {asset} failed")


# --- initiation latency and backfill ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_webserver(server: subprocess.Popen[bytes], port: int, log: str) -> None:
    """Return once the webserver answers on ``port`` (its code location loaded)."""
    deadline = time.monotonic() + 180
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited with {server.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"dagster-webserver did not answer in 180 s: {exc}") from exc
            time.sleep(0.5)


def initiation_latency(database: Path, work: Path, launches: int) -> list[float]:
    """Milliseconds from a GraphQL launch request to the run being queued, per launch.

    A webserver on 127.0.0.1 with a temporary instance (queued runs, no daemon: runs stay
    queued, nothing executes); each launch is ``submit_job_execution``, which returns once
    the run is stored as QUEUED.
    """
    from dagster_graphql import DagsterGraphQLClient

    home = Path(tempfile.mkdtemp(prefix="dagster-home-", dir=work))
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    log = (work / "webserver.log").open("wb")
    server = subprocess.Popen(  # noqa: S603
        [
            str(BIN / "dagster-webserver"),
            "-w",
            str(ROOT / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=dagster_env(database, work / "latency-exports", home),
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    try:
        client = DagsterGraphQLClient("127.0.0.1", port_number=port)
        wait_for_webserver(server, port, log.name)
        latencies = []
        for n in range(launches + 1):
            start = time.perf_counter()
            # Naming the code location saves the client a query listing them first.
            run_id = client.submit_job_execution(
                "daily_export_job",
                repository_location_name="export_assets",
                repository_name="__repository__",
                tags={"dagster/partition": DAY.isoformat()},
            )
            elapsed = (time.perf_counter() - start) * 1000
            status = client.get_run_status(run_id)
            if status.value != "QUEUED":
                raise RuntimeError(f"run {run_id} is {status.value}, not QUEUED")
            if n:  # the first launch warms the webserver's caches
                latencies.append(elapsed)
        return latencies
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def backfill(data: Path, work: Path, days: int) -> tuple[float, float, float, int]:
    """A ``days``-partition backfill of every export, end to end (``export-assets materialize``)."""
    folder = data / f"backfill-{days}d"
    if not (folder / "proxies.db").is_file():
        staging = data / f".backfill-{days}d.partial"
        shutil.rmtree(staging, ignore_errors=True)
        subprocess.run(  # noqa: S603
            [
                str(BIN / "export-assets"),
                "sample-data",
                "--out",
                str(staging),
                "--days",
                str(days),
                "--end-date",
                DAY.isoformat(),
                "--seed",
                "11",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        staging.rename(folder)
    home = Path(tempfile.mkdtemp(prefix="dagster-home-", dir=work))
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    destination = work / "backfill"
    env = dagster_env(folder / "proxies.db", destination, home)
    env["EXPORT_PARTITION_START"] = (DAY - timedelta(days=days + 1)).isoformat()
    print(f"  backfill of {days} partitions (daily_export_job) ...", end="", flush=True)
    wall, cpu, peak = measure(
        [
            str(BIN / "export-assets"),
            "materialize",
            "--last-days",
            str(days),
            "--end-date",
            DAY.isoformat(),
        ],
        env,
    )
    manifests = len(list(destination.glob("*/dt=*/_manifest.json")))
    print(f" {wall:6.1f} s, {manifests} manifests", flush=True)
    return wall, cpu, peak, manifests


# --- report ---------------------------------------------------------------------------


def table(results: list[Measure]) -> list[str]:
    lines = [
        "| rows | contender | output | wall s | CPU s | rows/s | MB/s | peak MiB | output MB | ratio | × floor | × pandas |",  # noqa: E501
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rows in sorted({m.rows for m in results}):
        group = [m for m in results if m.rows == rows]
        floor = next(m for m in group if m.tool.startswith("floor") and m.output.endswith(".gz"))
        pandas = next(m for m in group if m.tool.startswith("pandas") and m.output.endswith(".gz"))
        day_mb = (floor.plain_bytes or 0) / 1e6  # the day as CSV
        for m in group:
            ratio = 1 - m.out_bytes / (m.plain_bytes or floor.plain_bytes or 1)
            lines.append(
                f"| {rows:,} | {m.tool} | {m.output} | {m.wall:.2f} | {m.cpu:.2f} | "
                f"{rows / m.wall:,.0f} | {day_mb / m.wall:.1f} | {m.peak_mib:.0f} | "
                f"{m.out_bytes / 1e6:.1f} | {ratio:.1%} | {m.wall / floor.wall:.2f} | "
                f"{m.wall / pandas.wall:.2f} |"
            )
    return lines


def targets(results: list[Measure], latencies: list[float] | None) -> list[tuple[str, bool, str]]:
    """Each target of the issue: what, PASS or MISS, the figures."""
    checks: list[tuple[str, bool, str]] = []
    sizes = sorted({m.rows for m in results})
    small = sizes[0]

    def find(rows: int, prefix: str, output_suffix: str) -> Measure:
        return next(
            m
            for m in results
            if m.rows == rows and m.tool.startswith(prefix) and m.output.endswith(output_suffix)
        )

    ours = find(small, "export_assets materialize()", ".csv.gz")
    floor = find(small, "floor", ".gz")
    pandas = find(small, "pandas", ".csv.gz")
    checks.append(
        (
            f"validation_events csv.gz ≤ {TARGET_FLOOR_FACTOR}× floor wall ({small:,} rows)",
            ours.wall <= TARGET_FLOOR_FACTOR * floor.wall,
            f"{ours.wall:.2f} s vs floor {floor.wall:.2f} s = {ours.wall / floor.wall:.2f}×",
        )
    )
    checks.append(
        (
            f"validation_events csv.gz ≥ {TARGET_PANDAS_SPEEDUP}× faster than pandas",
            pandas.wall >= TARGET_PANDAS_SPEEDUP * ours.wall,
            f"pandas {pandas.wall:.2f} s / {ours.wall:.2f} s = {pandas.wall / ours.wall:.2f}×",
        )
    )
    checks.append(
        (
            f"peak RSS ≤ {TARGET_PEAK_MIB:.0f} MiB ({small:,} rows)",
            ours.peak_mib <= TARGET_PEAK_MIB,
            f"{ours.peak_mib:.0f} MiB",
        )
    )
    if len(sizes) > 1:
        big = find(sizes[-1], "export_assets materialize()", ".csv.gz")
        checks.append(
            (
                f"peak RSS at {sizes[-1]:,} rows ≤ {TARGET_LARGE_RSS_GROWTH:.2f}× the {small:,} figure",  # noqa: E501
                big.peak_mib <= TARGET_LARGE_RSS_GROWTH * ours.peak_mib,
                f"{big.peak_mib:.0f} MiB vs {ours.peak_mib:.0f} MiB = {big.peak_mib / ours.peak_mib:.2f}×",  # noqa: E501
            )
        )
    for extension in ("csv.gz", "jsonl.gz"):
        try:
            m = find(small, "export_assets materialize()", extension)
        except StopIteration:
            continue
        ratio = 1 - m.out_bytes / (m.plain_bytes or 1)
        checks.append(
            (
                f"compression ratio {extension} ≥ {TARGET_RATIO:.0%}",
                ratio >= TARGET_RATIO,
                f"{ratio:.1%}",
            )
        )
    metrics = find(small, "export_assets proxy_metrics", ".csv.gz")
    checks.append(
        (
            f"proxy_metrics ≤ {TARGET_METRICS_FACTOR}× validation_events csv.gz",
            metrics.wall <= TARGET_METRICS_FACTOR * ours.wall,
            f"{metrics.wall:.2f} s vs {ours.wall:.2f} s = {metrics.wall / ours.wall:.2f}×",
        )
    )
    if latencies:
        median = statistics.median(latencies)
        checks.append(
            (
                f"export initiation (GraphQL launch → queued) median < {TARGET_INITIATION_MS:.0f} ms",  # noqa: E501
                median < TARGET_INITIATION_MS,
                f"median {median:.1f} ms of {len(latencies)} (min {min(latencies):.1f}, max {max(latencies):.1f})",  # noqa: E501
            )
        )
    return checks


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        memory = int(info.readline().split()[1]) / 1024 / 1024
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}"  # noqa: E501


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[1_000_000], help="validations in the day, per run"
    )
    parser.add_argument(
        "--data", type=Path, default=ROOT / "bench" / "data", help="cache of generated deployments"
    )
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "latest.md")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument(
        "--no-cli", action="store_true", help="skip the `dagster asset materialize` figure"
    )
    parser.add_argument(
        "--launches", type=int, default=20, help="GraphQL launches (0: skip the webserver)"
    )
    parser.add_argument("--backfill-days", type=int, default=30, help="0: skip the backfill")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per contender; the fastest is reported"
    )
    args = parser.parse_args(argv)
    global REPEAT  # a setting of this one run
    REPEAT = max(1, args.repeat)
    if "csv.gz" not in args.formats:
        parser.error("--formats must include csv.gz: the targets are measured on it")

    started = datetime.now(UTC)
    results: list[Measure] = []
    latencies: list[float] | None = None
    backfilled: tuple[float, float, float, int] | None = None
    args.data.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="export-bench-") as scratch:
        for rows in args.rows:
            database = deployment(args.data, rows)
            work = Path(scratch) / f"rows-{rows}"
            work.mkdir()
            results += contenders(database, rows, work, args.formats, cli=not args.no_cli)
            for path in sorted(work.glob("**/*")):  # big outputs go before the next size
                if path.is_file() and path.stat().st_size > MIB:
                    path.unlink()
        if args.launches:
            print(f"  export initiation: {args.launches} GraphQL launches ...", end="", flush=True)
            latencies = initiation_latency(
                deployment(args.data, min(args.rows)), Path(scratch), args.launches
            )
            print(f" median {statistics.median(latencies):.1f} ms", flush=True)
        if args.backfill_days:
            backfilled = backfill(args.data, Path(scratch), args.backfill_days)

    lines = [f"# Benchmark, {started:%Y-%m-%d %H:%M} UTC", "", f"Machine: {machine()}.", ""]
    lines += [
        "Each contender is one child process (start-up included): wall time, CPU time (user +",
        "system) and peak RSS of its process tree. MB/s is the day's size as CSV over wall",
        "time; ratio is 1 − output / uncompressed (for parquet: / the day as CSV). gzip level",
        "6 and mtime 0 everywhere; zstd level 3.",
        "",
        *table(results),
        "",
    ]
    if backfilled:
        wall, cpu, peak, manifests = backfilled
        lines += [
            f"Backfill: {args.backfill_days} partitions of `daily_export_job` (every export, with its "  # noqa: E501
            f"checks) via `export-assets materialize --last-days {args.backfill_days}`: "
            f"{wall:.1f} s wall, {cpu:.1f} s CPU, peak {peak:.0f} MiB, {manifests} manifests "
            f"({wall / args.backfill_days:.2f} s per partition).",
            "",
        ]
    lines += ["| target | result | figures |", "|---|---|---|"]
    for what, passed, figures in targets(results, latencies):
        lines.append(f"| {what} | {'PASS' if passed else 'MISS'} | {figures} |")
    text = "\n".join(lines) + "\n" + kept_ui_path_section(args.results)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    print()
    print(text)
    print(f"written to {args.results}")
    return 0


# bench/ui_path.py writes its own section of the same file, between these markers: kept.
UI_PATH_SECTION = ("<!-- bench/ui_path.py: start -->", "<!-- bench/ui_path.py: end -->")


def kept_ui_path_section(results: Path) -> str:
    """The UI-path section of the results file as it is, or nothing."""
    start, end = UI_PATH_SECTION
    old = results.read_text() if results.exists() else ""
    if start not in old or end not in old:
        return ""
    return "\n" + start + old.split(start, 1)[1].split(end, 1)[0] + end + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "pandas":
        child_pandas(*sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "materialize":
        child_materialize(*sys.argv[2:])
    else:
        sys.exit(main())
