"""The shell commands of README.md and docs/*.md, as written, with their docs-test markers.

Markdown is the source. A command is:

- each logical line of a fenced ``sh``/``bash``/``shell``/``console`` block (lines joined at a
  trailing backslash; ``#`` comment lines skipped; in ``console`` blocks only the lines
  after a ``$`` prompt). A block that keeps shell state (``cd``, ``export``, a heredoc or a
  loop) is one command, run as one script;
- an inline code span outside fences that reads as a complete command: it starts with
  ``make TARGET`` or ``.venv/bin/`` (after ``VAR=value`` words, if any) and holds no synopsis
  placeholder (``[...]``, ``a|b``, ``…``, ``DIR``, ``N``). A bare ``dagster dev`` in prose
  names a program (what ``make ui`` runs), not a step for the reader: it is not run.

An HTML comment just before a fenced block (blank lines between are allowed) changes how
its commands are run; several words may share one comment::

    <!-- docs-test: skip REASON -->            not run; the reason is reported
    <!-- docs-test: expect-fail exit=1 output="not published" -->
                                               must fail: that exit status (any non-zero
                                               if omitted) and that text in its output
    <!-- docs-test: s3 -->                     a moto S3 server on 127.0.0.1; the buckets its
                                               s3:// URLs name exist; EXPORT_DESTINATION and
                                               AWS_* point at it unless the command sets them
    <!-- docs-test: smtp -->                   an aiosmtpd server on 127.0.0.1, EXPORT_SMTP_*
    <!-- docs-test: timeout=600 -->            seconds (default 300)
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHELL_LANGUAGES = frozenset({"sh", "bash", "shell", "console"})
DEFAULT_TIMEOUT_SECONDS = 300.0

_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:(?P<body>.*?)-->\s*$")
_CODE_SPAN = re.compile(r"(`+)(?P<code>.+?)\1", re.DOTALL)
# Words after which the rest of the block depends on shell state.
_STATEFUL = re.compile(r"^\s*(?:(?:cd|export|source|if|for|while|until|case|function)\b|\.\s)|<<")
_INLINE_START = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:make\s+[a-z][\w-]*|\.venv/bin/\S)")
# A placeholder word of a synopsis (DIR, N, COMMAND, FROM..TO), not a VAR=value or $VAR.
_PLACEHOLDER = re.compile(r"(?<![=$\w/.-])[A-Z][A-Z_]*(?:\.\.[A-Z]+)?(?![\w=/.-])")


class MarkerError(ValueError):
    """A docs-test marker that cannot be read."""


@dataclass(frozen=True)
class Directives:
    """How a command is run, from the docs-test marker before its block."""

    skip: str | None = None
    expect_fail: bool = False
    expect_exit: int | None = None
    expect_output: str | None = None
    services: frozenset[str] = frozenset()
    timeout: float = DEFAULT_TIMEOUT_SECONDS


@dataclass(frozen=True)
class DocCommand:
    """One command as written, where it is, and how to run it."""

    text: str
    source: str  # "docs/exports.md:188"
    inline: bool = False
    directives: Directives = field(default_factory=Directives)

    @property
    def one_line(self) -> str:
        """The command on one line (continuations joined), for ids and reports."""
        return " ".join(self.text.replace("\\\n", " ").split())

    @property
    def shown(self) -> str:
        """``one_line`` without a trailing ``# comment`` (when no quote could hold the ``#``)."""
        line = self.one_line
        head, mark, _ = line.partition(" # ")
        return head if mark and not any(q in head for q in "'\"") else line

    @property
    def key(self) -> str:
        """The command without comments or layout: the same command written twice is one."""
        try:
            return shlex.join(shlex.split(self.text.replace("\\\n", " "), comments=True))
        except ValueError:
            return self.one_line


def parse_marker(body: str, where: str) -> Directives:
    """Read the words of a ``<!-- docs-test: ... -->`` comment."""
    words = shlex.split(body)
    skip: str | None = None
    expect_fail = False
    expect_exit: int | None = None
    expect_output: str | None = None
    services: set[str] = set()
    timeout = DEFAULT_TIMEOUT_SECONDS
    index = 0
    while index < len(words):
        word = words[index]
        if word == "skip":
            skip = " ".join(words[index + 1 :]).strip()
            if not skip:
                raise MarkerError(f"{where}: `docs-test: skip` needs a reason after it")
            break
        if word == "expect-fail":
            expect_fail = True
        elif word.startswith("exit="):
            expect_exit = _number(word, where, int)
        elif word.startswith("output="):
            expect_output = word.removeprefix("output=")
        elif word in ("s3", "smtp"):
            services.add(word)
        elif word.startswith("timeout="):
            timeout = _number(word, where, float)
        else:
            raise MarkerError(
                f"{where}: unknown docs-test word {word!r}: use skip REASON, expect-fail "
                '[exit=N] [output="TEXT"], s3, smtp or timeout=SECONDS'
            )
        index += 1
    if (expect_exit is not None or expect_output is not None) and not expect_fail:
        raise MarkerError(f"{where}: exit= and output= go with expect-fail")
    if expect_exit == 0:
        raise MarkerError(f"{where}: expect-fail exit=0 is not a failure: drop the marker")
    return Directives(skip, expect_fail, expect_exit, expect_output, frozenset(services), timeout)


def _number(word: str, where: str, kind: type[int] | type[float]) -> Any:
    name, _, value = word.partition("=")
    try:
        return kind(value)
    except ValueError:
        raise MarkerError(f"{where}: {name}={value!r} is not a number") from None


def split_block(lines: list[str], language: str) -> list[tuple[int, str]]:
    """The commands of a fenced block: (offset of its first line in the block, text)."""
    if language == "console":
        lines = _console_commands(lines)
    body = [(n, line) for n, line in enumerate(lines) if line.strip()]
    if not body:
        return []
    if any(_STATEFUL.search(line) for _, line in body):
        script = "\n".join(line for _, line in body)
        return [(body[0][0], script)]
    commands: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for number, line in body:
        if not current and line.lstrip().startswith("#"):
            continue
        if not current:
            start = number
        current.append(line)
        text = "\n".join(current)
        if line.rstrip().endswith("\\") or not _quotes_closed(text):
            continue
        commands.append((start, text))
        current = []
    if current:  # an unfinished continuation: still what the reader would paste
        commands.append((start, "\n".join(current)))
    return commands


def _console_commands(lines: list[str]) -> list[str]:
    """Lines after a ``$`` prompt and their continuations; output lines become blank."""
    kept: list[str] = []
    continuing = False
    for line in lines:
        if line.startswith("$ "):
            kept.append(line[2:])
            continuing = line.rstrip().endswith("\\")
        elif continuing:
            kept.append(line)
            continuing = line.rstrip().endswith("\\")
        else:
            kept.append("")
    return kept


def _quotes_closed(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return False
    return True


def is_synopsis(code: str) -> bool:
    """A usage line with placeholders (``[--opt]``, ``a|b``, ``DIR``), not a command."""
    if any(mark in code for mark in ("[", "…", "...")):
        return True
    unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", "", code)
    return "|" in unquoted or bool(_PLACEHOLDER.search(unquoted))


def inline_command(code: str) -> str | None:
    """The command an inline code span holds, or None when it is not a complete command."""
    text = code.replace("\\|", "|").strip()
    if not _INLINE_START.match(text) or is_synopsis(text):
        return None
    return text


def extract(path: Path, root: Path) -> Iterator[DocCommand]:
    """Every command of one markdown file, in the order it is written."""
    name = path.relative_to(root).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    directives: Directives | None = None
    paragraph: list[tuple[int, str]] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        marker = _MARKER.match(line)
        fence = _FENCE.match(line)
        if marker:
            yield from _inline(paragraph, name)
            paragraph = []
            directives = parse_marker(marker.group("body"), f"{name}:{index + 1}")
        elif fence:
            yield from _inline(paragraph, name)
            paragraph = []
            closing = fence.group(1)
            language = fence.group(2).lower()
            end = index + 1
            while end < len(lines) and not lines[end].strip().startswith(closing):
                end += 1
            if language in SHELL_LANGUAGES:
                for offset, text in split_block(lines[index + 1 : end], language):
                    source = f"{name}:{index + 2 + offset}"
                    yield DocCommand(text, source, False, directives or Directives())
            elif directives is not None:
                raise MarkerError(
                    f"{name}:{index + 1}: a docs-test marker before a "
                    f"```{language} block, which is not run"
                )
            directives = None
            index = end
        elif not line.strip():
            yield from _inline(paragraph, name)
            paragraph = []
        else:
            if directives is not None:
                raise MarkerError(
                    f"{name}:{index}: a docs-test marker must come just before a fenced shell block"
                )
            paragraph.append((index + 1, line))
        index += 1
    yield from _inline(paragraph, name)


def _inline(paragraph: list[tuple[int, str]], name: str) -> Iterator[DocCommand]:
    """Commands in the code spans of a paragraph (a span may wrap to the next line)."""
    if not paragraph:
        return
    text = "\n".join(line for _, line in paragraph)
    starts = [0]
    for _, line in paragraph:
        starts.append(starts[-1] + len(line) + 1)
    for span in _CODE_SPAN.finditer(text):
        command = inline_command(" ".join(span.group("code").split()))
        if command is None:
            continue
        line_index = max(i for i, start in enumerate(starts[:-1]) if start <= span.start())
        yield DocCommand(command, f"{name}:{paragraph[line_index][0]}", inline=True)


def documented_commands(root: Path) -> list[DocCommand]:
    """README.md then docs/*.md (sorted), each command once, at its first place."""
    files: Iterable[Path] = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    seen: dict[str, DocCommand] = {}
    for path in files:
        if not path.is_file():
            continue
        for command in extract(path, root):
            # A fenced block's marker wins over an inline mention of the same command.
            known = seen.get(command.key)
            if known is None or (known.inline and not command.inline):
                seen[command.key] = command
    return list(seen.values())
