"""Every shell command of README.md and docs/*.md runs as written (see commands.py, runner.py).

One test per command, in one copy of the repo after `make run` (the README's quick start):
the sample deployment, its exports and Dagster's instance are shared, as a reader who
follows the docs shares them. Servers (`make ui`, `make daemon`, `dagster dev`,
`dagster-daemon run`) run first, before any command queues runs their daemon would pick up;
each is started, probed until it serves and stopped. The rest run in the order written.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from docs_tests.commands import DocCommand, MarkerError, documented_commands
from docs_tests.runner import (
    CHECKOUT,
    QUICK_START,
    RESULTS,
    Outcome,
    Repo,
    command_words,
    fresh_env,
    not_run_reason,
    run_command,
    run_server,
    server_kind,
    tail,
)
from docs_tests.services import service_env

pytestmark = pytest.mark.docs

_CHECKOUT_VIEW = Repo(CHECKOUT, Path(tempfile.gettempdir()))


def _collect() -> tuple[list[DocCommand], str]:
    try:
        commands = documented_commands(CHECKOUT)
    except MarkerError as exc:
        return [], str(exc)
    servers = [c for c in commands if server_kind(command_words(c.text), _CHECKOUT_VIEW)]
    quick = [c for c in commands if c.key == QUICK_START]
    rest = [c for c in commands if c not in servers and c not in quick]
    return quick + servers + rest, ""


COMMANDS, MARKER_ERROR = _collect()


def test_docs_test_markers_are_valid() -> None:
    """A marker that cannot be read fails here, naming the file and line."""
    assert not MARKER_ERROR, MARKER_ERROR
    assert COMMANDS, "no shell command found in README.md or docs/*.md"


@pytest.mark.slow  # the quick start alone takes 30-50 s; the whole run about 4 min
@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.source}::{c.shown[:60]}" for c in COMMANDS])
def test_documented_command_runs_as_written(command: DocCommand, docs_repo: Repo) -> None:
    """Exit status 0 (or the failure its marker states), from a fresh shell in the repo copy."""
    where = f"{command.source}{' (inline)' if command.inline else ''}"
    if command.directives.skip:
        skipped = Outcome("not run", None, "", 0.0, command.directives.skip)
        RESULTS[command.key] = (where, command.shown, skipped)
        pytest.skip(f"{where}: docs-test: skip {command.directives.skip}")
    words = command_words(command.text)
    reason = not_run_reason(words)
    if reason:
        RESULTS[command.key] = (where, command.shown, Outcome("not run", None, "", 0.0, reason))
        pytest.skip(f"not run: {reason}")
    outcome = RESULTS[command.key][2] if command.key in RESULTS else _run(command, docs_repo)
    RESULTS[command.key] = (where, command.shown, outcome)
    if outcome.status == "not run":
        pytest.skip(outcome.detail)
    directives = command.directives
    shown = (
        f"{where}: `{command.one_line}` exited {outcome.exit_code} in "
        f"{outcome.seconds:.1f} s {outcome.detail}\n{tail(outcome.output)}"
    )
    if not directives.expect_fail:
        assert outcome.exit_code == 0, shown
        return
    assert outcome.exit_code not in (0, None), f"marked expect-fail but it passed: {shown}"
    if directives.expect_exit is not None:
        assert outcome.exit_code == directives.expect_exit, shown
    if directives.expect_output is not None:
        assert directives.expect_output in outcome.output, shown


def _run(command: DocCommand, repo: Repo) -> Outcome:
    with service_env(command.directives.services, command.text) as extra:
        env = fresh_env(repo, extra)
        server = server_kind(command_words(command.text), repo)
        if server is not None:
            return run_server(command.text, server, repo, env)
        return run_command(command.text, repo, env, command.directives.timeout)
