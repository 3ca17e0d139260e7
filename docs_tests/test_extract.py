"""How commands are read from markdown: blocks, continuations, prompts, markers, inline spans."""

from __future__ import annotations

from pathlib import Path

import pytest

from docs_tests.commands import MarkerError, extract, inline_command, split_block
from docs_tests.runner import _server_of, not_run_reason

pytestmark = pytest.mark.docs


def _commands(tmp_path: Path, text: str) -> list[tuple[str, str, bool]]:
    (tmp_path / "README.md").write_text(text)
    return [(c.source, c.text, c.inline) for c in extract(tmp_path / "README.md", tmp_path)]


def test_a_block_is_split_at_lines_joined_at_backslashes_comments_skipped() -> None:
    lines = ["# set up", "a --x \\", "  --y 'q", "r'  # two lines in quotes", "", "b"]
    assert split_block(lines, "sh") == [
        (1, "a --x \\\n  --y 'q\nr'  # two lines in quotes"),
        (5, "b"),
    ]


def test_a_block_that_keeps_shell_state_is_one_script() -> None:
    lines = ["export DAGSTER_HOME=$PWD/.dagster", ".venv/bin/export-assets history"]
    assert split_block(lines, "bash") == [(0, "\n".join(lines))]


def test_a_console_block_runs_only_what_follows_a_prompt() -> None:
    lines = ["$ echo hi", "hi", "$ ls \\", "  -l", "total 0"]
    assert split_block(lines, "console") == [(0, "echo hi"), (2, "ls \\\n  -l")]


def test_commands_carry_their_file_and_line_and_markers(tmp_path: Path) -> None:
    text = (
        "Intro `make ui` and `.venv/bin/export-assets link ASSET PARTITION [--expires 1h]`.\n\n"
        '<!-- docs-test: expect-fail exit=2 output="no such" timeout=5 -->\n\n'
        "```sh\nmake nothing\n```\n\n```json\n{}\n```\n"
    )
    (tmp_path / "README.md").write_text(text)
    commands = list(extract(tmp_path / "README.md", tmp_path))
    assert [(c.source, c.text, c.inline) for c in commands] == [
        ("README.md:1", "make ui", True),
        ("README.md:6", "make nothing", False),
    ]
    marked = commands[1].directives
    assert (marked.expect_fail, marked.expect_exit, marked.expect_output, marked.timeout) == (
        True,
        2,
        "no such",
        5.0,
    )
    assert commands[0].directives.expect_fail is False


def test_a_skip_marker_keeps_its_reason_and_services_are_named(tmp_path: Path) -> None:
    text = (
        "<!-- docs-test: skip needs a real AWS account -->\n```sh\naws s3 ls\n```\n"
        "<!-- docs-test: s3 smtp -->\n```sh\nmake run\n```\n"
    )
    (tmp_path / "README.md").write_text(text)
    skip, services = (c.directives for c in extract(tmp_path / "README.md", tmp_path))
    assert skip.skip == "needs a real AWS account"
    assert services.services == frozenset({"s3", "smtp"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- docs-test: sometimes -->\n```sh\nx\n```\n", "README.md:1: unknown docs-test word"),
        ("<!-- docs-test: skip -->\n```sh\nx\n```\n", "needs a reason"),
        ("<!-- docs-test: exit=1 -->\n```sh\nx\n```\n", "go with expect-fail"),
        ("<!-- docs-test: expect-fail exit=0 -->\n```sh\nx\n```\n", "is not a failure"),
        ("<!-- docs-test: timeout=soon -->\n```sh\nx\n```\n", "'soon' is not a number"),
        ("<!-- docs-test: s3 -->\n```json\n{}\n```\n", "```json block, which is not run"),
        ("<!-- docs-test: s3 -->\nprose\n```sh\nx\n```\n", "just before a fenced shell block"),
    ],
)
def test_a_bad_marker_is_named_with_its_place(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(MarkerError, match=message.replace("(", r"\(").replace("`", "`")):
        _commands(tmp_path, text)


def test_an_inline_span_may_wrap_to_the_next_line(tmp_path: Path) -> None:
    text = "Run `DAGSTER_HOME=$PWD/.dagster\n.venv/bin/export-assets history` to see.\n"
    assert _commands(tmp_path, text) == [
        ("README.md:1", "DAGSTER_HOME=$PWD/.dagster .venv/bin/export-assets history", True)
    ]


@pytest.mark.parametrize(
    ("span", "command"),
    [
        ("make daemon", "make daemon"),
        (
            ".venv/bin/dagster definitions validate -w workspace.yaml",
            ".venv/bin/dagster definitions validate -w workspace.yaml",
        ),
        ("dagster dev", None),  # names a program in prose
        ("make", None),
        (".venv/bin/export-assets sample-data --out DIR", None),
        (".venv/bin/export-assets restore pool\\|config EXPORT", None),
        ("EXPORT_PASSWORD=… .venv/bin/x", None),
        ("sqlite3 -csv \\| gzip -6", None),
    ],
)
def test_only_complete_commands_are_taken_from_inline_code(span: str, command: str | None) -> None:
    assert inline_command(span) == command


def test_suites_and_benchmarks_are_listed_as_not_run_with_a_reason() -> None:
    assert not_run_reason(["make", "test"]) is not None
    assert not_run_reason(["make", "test-slow"]) == not_run_reason(["make", "test-slow"])
    assert not_run_reason(["make", "test", "-j2"]) is None  # not the listed command
    assert not_run_reason(["make", "run"]) is None
    assert not_run_reason([".venv/bin/python", "bench/run.py"]) is not None
    assert not_run_reason([".venv/bin/export-assets", "history"]) is None


def test_servers_are_recognised_with_their_address() -> None:
    dev = _server_of([".venv/bin/dagster", "dev", "-w", "w.yaml", "-h", "127.0.0.1", "-p", "3001"])
    assert dev is not None
    assert (dev.http, dev.daemon) == (("127.0.0.1", 3001), True)
    daemon = _server_of([".venv/bin/dagster-daemon", "run", "-w", "workspace.yaml"])
    assert daemon is not None
    assert (daemon.http, daemon.daemon) == (None, True)
    assert _server_of([".venv/bin/dagster", "job", "backfill"]) is None
