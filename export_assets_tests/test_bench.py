"""The benchmark driver (bench/run.py): its report logic, and a run end to end on a tiny day.

Timing is not asserted: benchmarks are not tests. This proves the driver, its children and
its report work, so that `make bench` does.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "bench" / "run.py"
VERDICT = re.compile(r"^\| (.+?) \| (PASS|MISS|SKIP) \| (.+) \|$", re.MULTILINE)


def load_driver() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", DRIVER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_driver()


def measures(bench: Any, rows: int, *, cli: bool, peak: float) -> list[Any]:
    """One size's contenders as the driver records them (figures chosen, not measured)."""
    made = [
        bench.Measure(rows, bench.ANCHOR, "", 2.0, 2.0, 100.0, 0, None),
        bench.Measure(
            rows, "floor: sqlite3 -csv piped to gzip -6", "floor.csv.gz", 4.0, 5.0, 20.0, 250, 1000
        ),
        bench.Measure(
            rows, "pandas: read_sql + to_csv", "pandas.csv.gz", 10.0, 10.0, 700.0, 260, 1000
        ),
        bench.Measure(
            rows, bench.CSV_GZ, "validation_events-2026-11-20.csv.gz", 5.0, 6.0, peak, 240, 1000
        ),
        bench.Measure(
            rows,
            "export_assets proxy_metrics csv.gz",
            "proxy_metrics.csv.gz",
            6.0,
            6.0,
            150.0,
            40,
            100,
        ),
    ]
    if cli:
        made.append(
            bench.Measure(
                rows, bench.CLI, "validation_events-2026-11-20.csv.gz", 9.0, 10.0, 250.0, 240, 1000
            )
        )
    return made


def test_each_target_is_judged_from_the_figures_of_the_same_run(bench: Any) -> None:
    results = measures(bench, 1_000_000, cli=True, peak=196.0)
    results += measures(bench, 10_000_000, cli=True, peak=197.0)
    verdicts = {what: (result, figures) for what, result, figures in bench.targets(results)}
    assert verdicts == {
        "T3 `dagster asset materialize --select validation_events` csv.gz, checks included, "
        "≤ 2.0× floor wall (1,000,000 rows)": (
            "MISS",
            "9.00 s vs floor 4.00 s = 2.25× (CPU 10.00 s vs 5.00 s = 2.00×)",
        ),
        "T4 in-process materialize() validation_events csv.gz ≤ 1.3× floor wall (1,000,000 rows)": (
            "PASS",
            "5.00 s vs floor 4.00 s = 1.25× (CPU 6.00 s vs 5.00 s = 1.20×)",
        ),
        "T4 in-process materialize() validation_events csv.gz ≥ 2.0× faster than pandas "
        "(1,000,000 rows)": (
            "PASS",
            "pandas 10.00 s / 5.00 s = 2.00× (CPU 10.00 s vs 6.00 s = 1.67×)",
        ),
        # The bound is the anchor's peak (100 MiB) + 96 MiB, at every size.
        "T5 peak RSS of validation_events csv.gz ≤ anchor + 96 MiB (1,000,000 rows)": (
            "PASS",
            "196 MiB vs anchor 100 + 96 = 196 MiB (+96 MiB over the anchor)",
        ),
        "T5 peak RSS of validation_events csv.gz ≤ anchor + 96 MiB (10,000,000 rows)": (
            "MISS",
            "197 MiB vs anchor 100 + 96 = 196 MiB (+97 MiB over the anchor)",
        ),
        "compression ratio csv.gz ≥ 75%": ("PASS", "76.0%"),
        "proxy_metrics ≤ 2.0× validation_events csv.gz": ("PASS", "6.00 s vs 5.00 s = 1.20×"),
    }


def test_a_target_whose_contender_was_not_run_is_skipped_not_passed(bench: Any) -> None:
    verdicts = bench.targets(measures(bench, 20_000, cli=False, peak=150.0))
    (t3,) = [v for v in verdicts if v[0].startswith("T3")]
    assert t3[1:] == ("SKIP", "not measured (--no-cli)")


def test_the_start_up_section_notes_a_failing_script_and_the_report_stands(
    bench: Any, tmp_path: Path
) -> None:
    script = tmp_path / "startup.py"
    script.write_text("def main(argv):\n    raise RuntimeError('no interpreter to start')\n")
    lines = bench.startup_section(script)
    assert lines[0] == "## Start-up (`bench/startup.py`)"
    assert "Not measured: startup.py failed (RuntimeError: no interpreter to start)." in lines
    assert bench.startup_section(tmp_path / "missing.py")[2] == (
        f"Not measured: {tmp_path / 'missing.py'} is not there."
    )
    script.write_text("def main(argv):\n    return '| case |\\n|---|\\n'\n")
    assert bench.startup_section(script)[2] == "| case |\n|---|"


def test_the_ui_path_section_of_the_results_is_kept_as_it_is(bench: Any, tmp_path: Path) -> None:
    start, end = bench.UI_PATH_SECTION
    results = tmp_path / "latest.md"
    section = f"{start}\n## UI path\n| T1 | PASS | 1.5× |\n{end}"
    results.write_text(f"# Benchmark, old\n\nold table\n\n{section}\n\nafter\n")
    assert bench.kept_ui_path_section(results) == f"\n{section}\n"
    postgres = (
        "<!-- bench/ui_path.py --storage postgres: start -->\n## UI path on postgres\n"
        "<!-- bench/ui_path.py --storage postgres: end -->"
    )
    results.write_text(f"# Benchmark, old\n\n{section}\n\n{postgres}\n\nafter\n")
    assert bench.kept_ui_path_section(results) == f"\n{section}\n\n{postgres}\n"
    results.write_text(f"# Benchmark\n\n{start}\n## UI path, never ended\n")
    assert bench.kept_ui_path_section(results) == ""
    results.write_text("# Benchmark, no UI-path section yet\n")
    assert bench.kept_ui_path_section(results) == ""
    assert bench.kept_ui_path_section(tmp_path / "absent.md") == ""


@pytest.mark.slow  # 8 contenders, each a process starting Python (and Dagster): 30-45 s
def test_repeated_runs_go_round_robin_and_each_contender_keeps_its_fastest(
    bench: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each round runs every contender once, so that the runs compared come from the same
    minutes of a machine whose speed drifts; each keeps its fastest run, the largest RSS."""
    log = tmp_path / "order.log"
    out = tmp_path / "b.txt"
    out.write_text("b")
    contenders = [
        bench.Contender(10, "a", None, ["bash", "-c", f"echo a >> '{log}'"]),
        bench.Contender(10, "b", out, ["bash", "-c", f"echo b >> '{log}'; sleep 0.$RANDOM"]),
    ]
    monkeypatch.setattr(bench, "REPEAT", 3)
    a, b = bench.run_all(contenders)
    assert log.read_text().split() == ["a", "b"] * 3
    assert (a.tool, a.output, b.tool, b.output) == ("a", "", "b", "b.txt")
    assert 0 < b.wall < 1  # the fastest of the three sleeps


def test_the_driver_measures_every_contender_and_writes_the_table(tmp_path: Path) -> None:
    results = tmp_path / "results" / "latest.md"
    start, end = "<!-- bench/ui_path.py: start -->", "<!-- bench/ui_path.py: end -->"
    results.parent.mkdir()
    results.write_text(f"# old\n\n{start}\n## UI path, kept\n{end}\n")
    completed = subprocess.run(
        [
            sys.executable,
            str(DRIVER),
            "--rows",
            "2000",
            "--data",
            str(tmp_path / "data"),
            "--results",
            str(results),
            "--formats",
            "csv.gz",
            "--no-startup",
            "--backfill-days",
            "0",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    table = results.read_text()
    assert table in completed.stdout  # printed as written
    assert table.endswith(f"\n{start}\n## UI path, kept\n{end}\n")
    rows = {line.split(" | ")[1] for line in table.splitlines() if line.startswith("| 2,000 |")}
    assert rows == {
        "anchor: trivial one-asset materialize()",
        "floor: sqlite3 -csv piped to gzip -6",
        "floor: sqlite3 -csv piped to zstd -3",
        "pandas: read_sql + to_csv",
        "pandas: read_sql + to_parquet",
        "export_assets materialize() csv.gz",
        "export_assets proxy_metrics csv.gz",
        # Written where the driver pointed it (its output is measured there), checks included.
        "export_assets `dagster asset materialize` csv.gz",
    }
    verdicts = VERDICT.findall(table)
    assert [what.split(" ")[0] for what, _, _ in verdicts] == [
        "T3",
        "T4",
        "T4",
        "T5",
        "compression",
        "proxy_metrics",
    ]
    # The cached day is reused, not generated again, and holds what was asked for.
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["rows-2000"]
    assert (tmp_path / "data" / "rows-2000" / "proxies.db").is_file()


def test_a_run_without_the_measured_format_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            str(DRIVER),
            "--rows",
            "20000",
            "--data",
            str(tmp_path / "data"),
            "--formats",
            "parquet",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "--formats must include csv.gz: the targets are measured on it" in completed.stderr
    assert not (tmp_path / "data").exists()
