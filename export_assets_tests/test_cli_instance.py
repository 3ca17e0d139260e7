"""The CLI opens DAGSTER_HOME's instance safely when several commands start at once."""

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from click.testing import CliRunner

from export_assets.cli import main

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = 4  # without the lock, about half of them failed (measured over 5 rounds of 4)

# Imports first, says it is ready, then opens the instance the moment the test says go: the
# processes open a new DAGSTER_HOME within a millisecond or so of each other.
OPENER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from export_assets.cli.instance import open_instance

    ready, go = Path(sys.argv[1]), Path(sys.argv[2])
    ready.touch()
    while not go.exists():
        time.sleep(0.001)
    with open_instance(Path(os.environ["DAGSTER_HOME"])) as instance:
        assert instance.get_runs(limit=1) == []
    """
)


def test_commands_started_together_on_a_new_dagster_home_all_open_it(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    script = tmp_path / "opener.py"
    script.write_text(OPENER)
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{n}" for n in range(PROCESSES)]
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), str(flag), str(go)],
            cwd=ROOT,
            env={"DAGSTER_HOME": str(home), "PATH": "/usr/bin:/bin"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for flag in ready
    ]
    try:
        deadline = time.monotonic() + 120
        while not all(flag.exists() for flag in ready):
            assert time.monotonic() < deadline, "the processes did not start in 120 s"
            assert all(process.poll() is None for process in processes)
            time.sleep(0.05)
        go.touch()
        errors = [process.communicate(timeout=120)[1].decode() for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    # Before: "table alembic_version already exists" and the like, in about half of them.
    assert [process.returncode for process in processes] == [0] * PROCESSES, errors


def test_a_dagster_home_that_is_not_a_folder_is_said_with_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-home"
    result = CliRunner().invoke(main, ["history"], env={"DAGSTER_HOME": str(missing)})
    assert result.exit_code == 1
    assert f"DAGSTER_HOME={missing} is not a folder: create it" in result.output
    assert "Traceback" not in result.output
    assert not missing.exists()  # nothing created in its place
