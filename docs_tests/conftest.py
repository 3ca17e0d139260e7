"""The docs suite: the `docs` marker, the repo copy after `make run`, and a results table."""

from __future__ import annotations

import time

import pytest

from docs_tests.runner import (
    QUICK_START,
    RESULTS,
    Repo,
    copy_repo,
    fresh_env,
    run_command,
    venv_is_current,
)

QUICK_START_TIMEOUT_SECONDS = 900.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "docs: runs the shell commands of README.md and docs/*.md (`make test-docs`)"
    )


@pytest.fixture(scope="session")
def docs_repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    """A copy of the repo after the README's quick start, `make run`, ran in it."""
    repo = copy_repo(tmp_path_factory.mktemp("docs"))
    stale = venv_is_current(repo)
    if stale:
        pytest.fail(stale)
    outcome = run_command(QUICK_START, repo, fresh_env(repo), QUICK_START_TIMEOUT_SECONDS)
    RESULTS[QUICK_START] = ("(quick start, run first)", QUICK_START, outcome)
    return repo


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Each documented command: where, outcome, seconds; and the total."""
    if not RESULTS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("documented commands")
    total = 0.0
    for source, line, outcome in RESULTS.values():
        total += outcome.seconds
        detail = f" ({outcome.detail})" if outcome.detail else ""
        code = "" if outcome.exit_code is None else f" exit {outcome.exit_code}"
        write(
            f"{outcome.status:8} {outcome.seconds:6.1f} s  {source:26} {line[:100]}{code}{detail}"
        )
    write(f"{len(RESULTS)} commands, {total:.1f} s in commands, at {time.strftime('%H:%M:%S')}")
