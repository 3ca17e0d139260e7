"""Benchmark: what loading the code location costs, against a trivial one-asset location.

Every case runs in a fresh child process, ``--repeat`` times (5), and keeps the best of
each figure: wall time of the whole process (interpreter start-up included), the time of
the step itself measured inside the child, CPU time (user + system) and peak RSS from
``os.wait4``. The anchor is ``bench/trivial_location.py`` loaded the same way as
``export_assets.definitions``; the table gives every case as a multiple of it, and lists
the heavy packages the case imported (none of them should be needed to load the location).
``dagster definitions validate`` of both is measured too: what the CLI pays to load each.

    .venv/bin/python bench/startup.py              # prints the markdown table
    .venv/bin/python bench/startup.py --root DIR   # measure another checkout of the project
    .venv/bin/python bench/startup.py --baseline DIR   # and another one beside it, same run

From bench/run.py (its folder is on sys.path): ``import startup; markdown = startup.main([])``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DEFAULT_REPEAT = 5

# Packages a run imports only when it needs them (S3, reports, workbooks, encryption).
HEAVY = ("boto3", "botocore", "dagster_aws", "pandas", "reportlab", "openpyxl", "cryptography")

# Resolving the repository and building its jobs is what a code server does on load.
_RESOLVE = "repository = defs.get_repository_def()\nrepository.get_all_jobs()\n"


def _dagster_cli(*arguments: str) -> str:
    """Code that runs the ``dagster`` command in the child itself (so its imports are seen)."""
    return (
        "import runpy\n"
        f"sys.argv = ['dagster', *{list(arguments)!r}]\n"
        "try:\n"
        "    runpy.run_module('dagster', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exit:\n"
        "    if exit.code:\n"
        "        raise\n"
    )


@dataclass(frozen=True)
class Case:
    """One thing to measure: Python code run in a fresh interpreter."""

    name: str
    code: str
    anchor: bool = False
    project: bool = True  # measured in the --baseline checkout too


CASES = (
    Case("`import dagster`", "import dagster\n", project=False),
    Case("`import export_assets.definitions`", "import export_assets.definitions\n"),
    Case(
        "load export_assets (resolve the repository)",
        "from export_assets.definitions import defs\n" + _RESOLVE,
    ),
    Case(
        "anchor: trivial one-asset location (resolve the repository)",
        f"sys.path.insert(0, {str(BENCH)!r})\nfrom trivial_location import defs\n" + _RESOLVE,
        anchor=True,
        project=False,
    ),
    Case(
        "`dagster definitions validate -m export_assets.definitions`",
        _dagster_cli("definitions", "validate", "-m", "export_assets.definitions"),
    ),
    Case(
        "`dagster definitions validate -f bench/trivial_location.py -a defs`",
        _dagster_cli(
            "definitions", "validate", "-f", str(BENCH / "trivial_location.py"), "-a", "defs"
        ),
        project=False,
    ),
    Case(
        "load export_assets, then open an `s3://` destination (client only)",
        "from export_assets.definitions import defs\n"
        + _RESOLVE
        + "from export_assets.defs.resources.store import ExportStore\n"
        + "ExportStore(destination='s3://startup-bench/exports').open()\n",
    ),
)

# Runs the case between two clocks and reports what it loaded; stdout carries only the JSON.
_CHILD = """\
import json, sys, time
_wall, _cpu = time.perf_counter(), time.process_time()
{code}
_wall, _cpu = time.perf_counter() - _wall, time.process_time() - _cpu
_heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps({{"step": _wall, "step_cpu": _cpu, "modules": len(sys.modules), "heavy": _heavy}}))
"""


@dataclass(frozen=True)
class Measure:
    """A case's best figures over its runs."""

    case: Case
    wall: float  # the whole child process, start-up included
    step: float  # the case's code alone, timed inside the child
    cpu: float  # user + system of the whole child
    peak_mib: float
    modules: int
    heavy: tuple[str, ...]


def run_once(case: Case, root: Path, env: dict[str, str]) -> Measure:
    """Run ``case`` once in a fresh interpreter with ``root`` first on its path."""
    code = _CHILD.format(code=case.code, heavy=HEAVY)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", code], cwd=root, env=env, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status):
            err.seek(0)
            tail = err.read()[-4000:].decode(errors="replace")
            raise RuntimeError(f"{case.name} failed in {root}:\n{tail}")
        out.seek(0)
        report = json.loads(out.read().decode().strip().splitlines()[-1])
    return Measure(
        case=case,
        wall=wall,
        step=float(report["step"]),
        cpu=usage.ru_utime + usage.ru_stime,
        peak_mib=usage.ru_maxrss / 1024,  # KiB on Linux
        modules=int(report["modules"]),
        heavy=tuple(report["heavy"]),
    )


def measure_all(
    cases: Sequence[Case], roots: Sequence[Path], repeat: int
) -> list[tuple[Path, Measure]]:
    """The best (smallest) of each figure over ``repeat`` fresh runs of each case in each root
    (only the project's cases in the roots after the first).

    Runs go round-robin (every case once, then again), so that load from other work on a
    shared machine falls on every case alike.
    """
    runs: dict[tuple[Path, Case], list[Measure]] = {}
    for _ in range(repeat):
        for index, root in enumerate(roots):
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
            env.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # a client needs one, not a call
            for case in cases if index == 0 else [c for c in cases if c.project]:
                runs.setdefault((root, case), []).append(run_once(case, root, env))
    return [
        (
            root,
            Measure(
                case=case,
                wall=min(r.wall for r in found),
                step=min(r.step for r in found),
                cpu=min(r.cpu for r in found),
                peak_mib=min(r.peak_mib for r in found),
                modules=found[0].modules,
                heavy=found[0].heavy,
            ),
        )
        for (root, case), found in runs.items()
    ]


def table(measures: Sequence[tuple[Path, Measure]], repeat: int, baseline: Path | None) -> str:
    """The markdown table: every case beside the anchor (of the measured checkout)."""
    anchor = next(m for root, m in measures if m.case.anchor and root != baseline)
    lines = [
        f"Start-up, each case a fresh process, best of {repeat}, round-robin (wall: the whole "
        "process; step: the case's code alone, inside it; CPU: user + system of the process):",
        "",
        "| case | wall s | step s | CPU s | peak RSS MiB | wall × anchor | CPU × anchor | "
        "RSS × anchor | RSS − anchor MiB | modules | heavy packages loaded |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for root, m in measures:
        name = f"{m.case.name} (baseline {root})" if root == baseline else m.case.name
        lines.append(
            f"| {name} | {m.wall:.2f} | {m.step:.2f} | {m.cpu:.2f} | {m.peak_mib:.0f} | "
            f"{m.wall / anchor.wall:.2f} | {m.cpu / anchor.cpu:.2f} | "
            f"{m.peak_mib / anchor.peak_mib:.2f} | {m.peak_mib - anchor.peak_mib:+.0f} | "
            f"{m.modules} | {', '.join(m.heavy) or 'none'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> str:
    """Measure every case and return the markdown table (``argv``: the command line's)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, help="runs per case (5)")
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="the project checkout to measure (this one)"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (e.g. a git worktree of main) measured in the same run, "
        "its rows marked baseline",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat {args.repeat}: give at least 1 run per case")
    roots = [args.root.resolve()]
    if args.baseline is not None:
        roots.append(args.baseline.resolve())
    for option, root in zip(("--root", "--baseline"), roots, strict=False):
        if not (root / "export_assets" / "definitions.py").is_file():
            parser.error(f"{option} {root}: no export_assets/definitions.py there; give a checkout")
    baseline = roots[1] if len(roots) > 1 else None
    return table(measure_all(CASES, roots, args.repeat), args.repeat, baseline)


if __name__ == "__main__":
    print(main(), end="")
