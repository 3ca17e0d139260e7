"""The benchmark driver (bench/run.py) runs end to end on a tiny day and writes its table.

Timing is not asserted: benchmarks are not tests. This proves the driver, its children and
its report work, so that `make bench` does.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "bench" / "run.py"


def test_the_driver_measures_every_contender_and_writes_the_table(tmp_path: Path) -> None:
    results = tmp_path / "results" / "latest.md"
    completed = subprocess.run(
        [sys.executable, str(DRIVER), "--rows", "20000", "--data", str(tmp_path / "data"),
         "--results", str(results), "--formats", "csv.gz", "jsonl.gz", "--no-cli",
         "--launches", "0", "--backfill-days", "0"],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    table = results.read_text()
    assert table in completed.stdout  # printed as written
    rows = {line.split(" | ")[1] for line in table.splitlines() if line.startswith("| 20,000 |")}
    assert rows == {
        "floor: sqlite3 -csv piped to gzip -6",
        "floor: sqlite3 -csv piped to zstd -3",
        "pandas: read_sql + to_csv",
        "pandas: read_sql + to_parquet",
        "export_assets materialize() csv.gz",
        "export_assets materialize() jsonl.gz",
        "export_assets proxy_metrics csv.gz",
    }
    verdicts = re.findall(r"^\| (.+?) \| (PASS|MISS) \| (.+) \|$", table, re.MULTILINE)
    assert {what.split(" ")[0] for what, _, _ in verdicts} == {
        "validation_events", "peak", "compression", "proxy_metrics",
    }  # fmt: skip
    assert len(verdicts) == 6
    # The cached day is reused, not generated again, and holds what was asked for.
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["rows-20000"]
    assert (tmp_path / "data" / "rows-20000" / "proxies.db").is_file()


def test_a_run_without_the_measured_format_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    completed = subprocess.run(
        [sys.executable, str(DRIVER), "--rows", "20000", "--data", str(tmp_path / "data"),
         "--formats", "parquet"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 2
    assert "--formats must include csv.gz: the targets are measured on it" in completed.stderr
    assert not (tmp_path / "data").exists()
