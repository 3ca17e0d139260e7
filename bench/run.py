"""Benchmark: export a big day with this project, with pandas, and with the shell floor.

Every contender runs as its own child process; wall time around it, CPU time and peak RSS
of the whole process tree from ``os.wait4``. Prints one table, PASS/MISS per target (3, 4
and 5 of issue 14, and the compression and proxy_metrics ones), then the start-up table of
bench/startup.py, and writes them to ``bench/results/latest.md`` (keeping the UI-path
section bench/ui_path.py writes there). ``make bench`` (1M rows), ``make bench-large`` (1M
and 10M). See bench/README.md.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
DAY = date(2026, 11, 20)
PROXIES = 2000
EVENT_COLUMNS = "id, proxy_url, validated_at, is_valid, response_time_ms, error_type, error_message"
FORMATS = ("csv.gz", "csv.zst", "jsonl.gz", "parquet")
MIB = 1024 * 1024

# Targets 3, 4 and 5 of issue 14, and the compression and proxy_metrics ones of issue 9
# (see bench/README.md). Targets 1, 2 and 6 are bench/ui_path.py's.
TARGET_CLI_FLOOR_FACTOR = 2.0  # 3: `dagster asset materialize`, checks included
TARGET_FLOOR_FACTOR = 1.3  # 4: in-process materialize()
TARGET_PANDAS_SPEEDUP = 2.0  # 4
TARGET_RSS_HEADROOM_MIB = 96.0  # 5: over the anchor, a trivial one-asset materialize()
TARGET_RATIO = 0.75
TARGET_METRICS_FACTOR = 2.0

CSV_GZ = "export_assets materialize() csv.gz"
CLI = "export_assets `dagster asset materialize` csv.gz"
ANCHOR = "anchor: trivial one-asset materialize()"


@dataclass
class Measure:
    """One contender's run: what it is and what it cost."""

    rows: int
    tool: str
    output: str  # "" when the contender writes no file (the anchor)
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
        import zstandard  # here: the children (the anchor's figure above all) never load it

        with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as stream:
            while chunk := stream.read(4 * MIB):
                total += len(chunk)
        return total
    return None


REPEAT = 1  # rounds of every contender (--repeat); each one's fastest run is reported


@dataclass
class Contender:
    """One contender: what it is, what it writes, and how to run it."""

    rows: int
    tool: str
    output: Path | None
    command: Sequence[str]
    env: dict[str, str] | None = None


def run_all(contenders: Sequence[Contender]) -> list[Measure]:
    """Measure every contender REPEAT times, round-robin: each round runs each of them once,
    so that everyone's fastest run (the least disturbed by whatever else the machine does)
    comes from the same minutes of the machine's time; the largest peak RSS of the runs."""
    runs: list[list[tuple[float, float, float]]] = [[] for _ in contenders]
    for round_number in range(1, REPEAT + 1):
        if REPEAT > 1:
            print(f"  round {round_number} of {REPEAT}", flush=True)
        for contender, measured in zip(contenders, runs, strict=True):
            print(f"  {contender.rows:>11,}  {contender.tool:<48} ...", end="", flush=True)
            measured.append(measure(contender.command, contender.env))
            wall, cpu, peak = measured[-1]
            print(f" {wall:6.2f} s  {cpu:6.2f} s CPU  {peak:6.0f} MiB", flush=True)
    results = []
    for contender, measured in zip(contenders, runs, strict=True):
        wall, cpu, _ = min(measured)
        peak = max(run[2] for run in measured)
        if contender.output is None:
            results.append(Measure(contender.rows, contender.tool, "", wall, cpu, peak, 0, None))
            continue
        size = contender.output.stat().st_size
        results.append(
            Measure(
                contender.rows,
                contender.tool,
                contender.output.name,
                wall,
                cpu,
                peak,
                size,
                plain_size(contender.output),
            )
        )
    return results


def deployment_env(database: Path) -> dict[str, str]:
    """This environment plus the bench deployment's: its keys and its files.

    ``make run`` runs with the sample's ``.env`` loaded, so the leak scan knows the
    credentials in clear text; the bench gives its children the same keys, so that they scan
    for what production scans for. The paths are set here: the ones in the ``.env`` name the
    folder the sample was generated in before it was renamed into the cache, and any left in
    the caller's environment must not point a run elsewhere.
    """
    from dotenv import dotenv_values

    env = dict(os.environ)
    env_file = database.parent / ".env"
    if env_file.is_file():
        env.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    else:
        print(f"  note: no {env_file}: the leak scan will not know the clear-text credentials")
    env.update(
        PROXYWHIRL_DB=str(database),
        PROXYWHIRL_LOG_DIR=str(database.parent / "logs"),
        PROXYWHIRL_CONFIG=str(database.parent / "proxywhirl.toml"),
    )
    return env


def dagster_env(database: Path, destination: Path, home: Path) -> dict[str, str]:
    """The environment the code location reads its deployment and destination from."""
    env = deployment_env(database)
    env.update(
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
    plan: list[Contender] = []
    me = [sys.executable, str(Path(__file__).resolve())]
    plan.append(Contender(rows, ANCHOR, None, [*me, "anchor"]))
    ours = deployment_env(database)
    query = day_query()
    for codec, compressor, options in (("gz", "gzip -6", "-n"), ("zst", "zstd -3", "-q -c")):
        out = work / f"floor.csv.{codec}"
        pipeline = (
            f"set -o pipefail; sqlite3 -readonly -csv -header '{database}' \"{query}\""
            f" | {compressor} {options} > '{out}'"
        )
        floor = f"floor: sqlite3 -csv piped to {compressor}"
        plan.append(Contender(rows, floor, out, ["bash", "-c", pipeline]))
    for extension in ("csv.gz", "parquet"):
        out = work / f"pandas.{extension}"
        pandas = f"pandas: read_sql + to_{extension.split('.')[0]}"
        plan.append(Contender(rows, pandas, out, [*me, "pandas", str(database), str(out)]))
    for extension in formats:
        destination = work / f"inproc-{extension}"
        plan.append(
            Contender(
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
                ours,
            )
        )
    destination = work / "metrics"
    plan.append(
        Contender(
            rows,
            "export_assets proxy_metrics csv.gz",
            exported(destination, "proxy_metrics", "csv.gz"),
            [*me, "materialize", str(database), str(destination), "proxy_metrics", "csv.gz"],
            ours,
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
        env = dagster_env(database, destination, home)
        plan.append(
            Contender(rows, CLI, exported(destination, "validation_events", "csv.gz"), command, env)
        )
    return run_all(plan)


# --- children -------------------------------------------------------------------------


def child_pandas(database: str, out: str) -> None:
    """The baseline a pandas user writes."""
    import sqlite3

    import pandas as pd  # type: ignore[import-untyped]

    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    frame = pd.read_sql(day_query(), connection)
    if out.endswith(".csv.gz"):
        frame.to_csv(
            out, index=False, compression={"method": "gzip", "compresslevel": 6, "mtime": 0}
        )
    else:
        frame.to_parquet(out)
    connection.close()


def child_anchor() -> None:
    """The memory anchor: the least a Dagster ``materialize()`` costs (one trivial asset)."""
    from dagster import DagsterInstance, asset, materialize

    @asset
    def trivial() -> int:
        return 1

    if not materialize([trivial], instance=DagsterInstance.ephemeral()).success:
        raise SystemExit("materialize of the trivial asset failed")


def child_materialize(database: str, destination: str, asset: str, extension: str) -> None:
    """One partition of ``asset`` through ``dagster.materialize`` in this process, wired as
    export_assets/definitions.py wires it (the IO manager knows the deployment, so its
    leak scan looks for the deployment's credentials, as in production)."""
    from dagster import DagsterInstance, materialize

    from export_assets.defs.exports import EXPORT_ASSETS
    from export_assets.defs.resources.io_manager import ExportIOManager
    from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
    from export_assets.defs.resources.store import ExportStore

    fmt, _, codec = extension.partition(".")
    config: dict[str, Any] = {
        "format": fmt,
        "compression": {"": "none", "gz": "gzip", "zst": "zstd"}[codec],
    }
    store = ExportStore(destination=destination)
    folder = Path(database).parent
    proxywhirl = ProxyWhirlSource(
        database=database,
        log_dir=str(folder / "logs"),
        config_path=str(folder / "proxywhirl.toml"),
    )
    (definition,) = [a for a in EXPORT_ASSETS if a.key.path[-1] == asset]
    run_config: dict[str, Any] = {}
    try:  # a daily record's settings are fixed in code: the asset with these settings
        from export_assets.defs.exports.daily import with_settings
    except ImportError:  # older code locations took them as run config
        run_config = {"ops": {asset: {"config": config}}}
    else:
        definition = with_settings(definition, **config)
    result = materialize(
        [definition],
        partition_key=DAY.isoformat(),
        instance=DagsterInstance.ephemeral(),
        resources={
            "proxywhirl": proxywhirl,
            "export_store": store,
            "io_manager": ExportIOManager(store=store, proxywhirl=proxywhirl),
        },
        run_config=run_config,
    )
    if not result.success:
        raise SystemExit(f"materialize of {asset} failed")


# --- backfill -----------------------------------------------------------------------


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
            if m.output:
                ratio = 1 - m.out_bytes / (m.plain_bytes or floor.plain_bytes or 1)
                work = (
                    f"{m.output} | {m.wall:.2f} | {m.cpu:.2f} | {rows / m.wall:,.0f} | "
                    f"{day_mb / m.wall:.1f} | {m.peak_mib:.0f} | {m.out_bytes / 1e6:.1f} | "
                    f"{ratio:.1%}"
                )
            else:  # the anchor exports nothing: only its cost means something
                work = f"— | {m.wall:.2f} | {m.cpu:.2f} | — | — | {m.peak_mib:.0f} | — | —"
            lines.append(
                f"| {rows:,} | {m.tool} | {work} | {m.wall / floor.wall:.2f} | "
                f"{m.wall / pandas.wall:.2f} |"
            )
    return lines


Verdict = tuple[str, str, str]  # what, PASS | MISS | SKIP, the figures


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def cpu_aside(one: Measure, other: Measure) -> str:
    """The CPU seconds beside a wall-time verdict: steadier on a shared machine."""
    return f" (CPU {one.cpu:.2f} s vs {other.cpu:.2f} s = {one.cpu / other.cpu:.2f}×)"


def targets(results: list[Measure]) -> list[Verdict]:
    """Each target: what, PASS or MISS (SKIP when its contender was not run), the figures.

    Targets 3 and 4 are measured on the first size (1M rows in ``make bench`` and
    ``make bench-large``), target 5 on every size.
    """
    checks: list[Verdict] = []
    sizes = sorted({m.rows for m in results})
    small = sizes[0]

    def find(rows: int, prefix: str, output_suffix: str = "") -> Measure | None:
        return next(
            (
                m
                for m in results
                if m.rows == rows and m.tool.startswith(prefix) and m.output.endswith(output_suffix)
            ),
            None,
        )

    def found(rows: int, prefix: str, output_suffix: str = "") -> Measure:
        measure = find(rows, prefix, output_suffix)
        if measure is None:
            raise RuntimeError(f"no {prefix!r} contender at {rows:,} rows")
        return measure

    ours = found(small, CSV_GZ)
    floor = found(small, "floor", ".gz")
    pandas = found(small, "pandas", ".csv.gz")
    cli = find(small, CLI)
    what = (
        f"T3 `dagster asset materialize --select validation_events` csv.gz, checks included, "
        f"≤ {TARGET_CLI_FLOOR_FACTOR}× floor wall ({small:,} rows)"
    )
    if cli is None:
        checks.append((what, "SKIP", "not measured (--no-cli)"))
    else:
        checks.append(
            (
                what,
                verdict(cli.wall <= TARGET_CLI_FLOOR_FACTOR * floor.wall),
                f"{cli.wall:.2f} s vs floor {floor.wall:.2f} s = {cli.wall / floor.wall:.2f}×"
                f"{cpu_aside(cli, floor)}",
            )
        )
    checks.append(
        (
            f"T4 in-process materialize() validation_events csv.gz ≤ {TARGET_FLOOR_FACTOR}× "
            f"floor wall ({small:,} rows)",
            verdict(ours.wall <= TARGET_FLOOR_FACTOR * floor.wall),
            f"{ours.wall:.2f} s vs floor {floor.wall:.2f} s = {ours.wall / floor.wall:.2f}×"
            f"{cpu_aside(ours, floor)}",
        )
    )
    checks.append(
        (
            f"T4 in-process materialize() validation_events csv.gz ≥ {TARGET_PANDAS_SPEEDUP}× "
            f"faster than pandas ({small:,} rows)",
            verdict(pandas.wall >= TARGET_PANDAS_SPEEDUP * ours.wall),
            f"pandas {pandas.wall:.2f} s / {ours.wall:.2f} s = {pandas.wall / ours.wall:.2f}×"
            f"{cpu_aside(pandas, ours)}",
        )
    )
    for rows in sizes:
        mine = found(rows, CSV_GZ)
        anchor = found(rows, ANCHOR)
        bound = anchor.peak_mib + TARGET_RSS_HEADROOM_MIB
        checks.append(
            (
                f"T5 peak RSS of validation_events csv.gz ≤ anchor + "
                f"{TARGET_RSS_HEADROOM_MIB:.0f} MiB ({rows:,} rows)",
                verdict(mine.peak_mib <= bound),
                f"{mine.peak_mib:.0f} MiB vs anchor {anchor.peak_mib:.0f} + "
                f"{TARGET_RSS_HEADROOM_MIB:.0f} = {bound:.0f} MiB "
                f"({mine.peak_mib - anchor.peak_mib:+.0f} MiB over the anchor)",
            )
        )
    for extension in ("csv.gz", "jsonl.gz"):
        m = find(small, "export_assets materialize()", extension)
        if m is None:
            continue
        ratio = 1 - m.out_bytes / (m.plain_bytes or 1)
        checks.append(
            (
                f"compression ratio {extension} ≥ {TARGET_RATIO:.0%}",
                verdict(ratio >= TARGET_RATIO),
                f"{ratio:.1%}",
            )
        )
    metrics = found(small, "export_assets proxy_metrics", ".csv.gz")
    checks.append(
        (
            f"proxy_metrics ≤ {TARGET_METRICS_FACTOR}× validation_events csv.gz",
            verdict(metrics.wall <= TARGET_METRICS_FACTOR * ours.wall),
            f"{metrics.wall:.2f} s vs {ours.wall:.2f} s = {metrics.wall / ours.wall:.2f}×",
        )
    )
    return checks


def startup_section(script: Path = BENCH / "startup.py") -> list[str]:
    """The start-up table of ``script`` (bench/startup.py: import time and RSS of the code
    location) as a section of the report.

    That script is measured on its own too; its failure is noted here (with the traceback
    on stderr), and the rest of the report stands.
    """
    lines = ["## Start-up (`bench/startup.py`)", ""]
    if not script.is_file():
        return [*lines, f"Not measured: {script} is not there.", ""]
    print(f"  start-up ({script.name}) ...", flush=True)
    try:
        spec = importlib.util.spec_from_file_location("bench_startup", script)
        if spec is None or spec.loader is None:
            raise ImportError(f"{script} cannot be loaded as a module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
        markdown = module.main([])
    except (Exception, SystemExit) as exc:  # its own failure, not the bench's
        traceback.print_exc()
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        return [*lines, f"Not measured: {script.name} failed ({type(exc).__name__}: {reason}).", ""]
    return [*lines, str(markdown).rstrip("\n"), ""]


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
        "--no-startup", action="store_true", help="skip the start-up table (bench/startup.py)"
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
        if args.backfill_days:
            backfilled = backfill(args.data, Path(scratch), args.backfill_days)

    lines = [f"# Benchmark, {started:%Y-%m-%d %H:%M} UTC", "", f"Machine: {machine()}.", ""]
    lines += [
        "Each contender is one child process (start-up included): wall time, CPU time (user +",
        "system) and peak RSS of its process tree. MB/s is the day's size as CSV over wall",
        "time; ratio is 1 − output / uncompressed (for parquet: / the day as CSV). gzip level",
        "6 and mtime 0 everywhere; zstd level 3. The anchor is a trivial one-asset Dagster",
        "`materialize()` (ephemeral instance): what any Dagster run costs, for target 5. This",
        "project's contenders run wired as the code location is (the IO manager scans for the",
        "deployment's credentials, its keys loaded from the sample's `.env`).",
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
    for what, result, figures in targets(results):
        lines.append(f"| {what} | {result} | {figures} |")
    lines.append("")
    if not args.no_startup:
        lines += startup_section()
    text = "\n".join(lines) + "\n" + kept_ui_path_section(args.results)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    print()
    print(text)
    print(f"written to {args.results}")
    return 0


# bench/ui_path.py writes its own sections of the same file (one per storage), between
# markers such as these: kept.
UI_PATH_SECTION = ("<!-- bench/ui_path.py: start -->", "<!-- bench/ui_path.py: end -->")
UI_PATH_SECTIONS = re.compile(r"<!-- (bench/ui_path\.py[^:>]*): start -->.*?<!-- \1: end -->", re.S)


def kept_ui_path_section(results: Path) -> str:
    """The UI-path sections of the results file as they are, or nothing."""
    old = results.read_text() if results.exists() else ""
    return "".join(f"\n{match.group(0)}\n" for match in UI_PATH_SECTIONS.finditer(old))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "anchor":
        child_anchor()
    elif len(sys.argv) > 1 and sys.argv[1] == "pandas":
        child_pandas(*sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "materialize":
        child_materialize(*sys.argv[2:])
    else:
        sys.exit(main())
