"""Run documented commands as a reader would: in a copy of the repo, from a fresh shell.

The copy holds the working tree's files (tracked and new, not ignored ones), the checkout's
``.venv`` and ``export_assets`` package as symlinks (a venv cannot move; its editable install
runs the checkout's package anyway), and, once ``make run`` has run there, the sample
deployment in ``data/proxywhirl``, its exports in ``exports`` and Dagster's instance in
``.dagster``: the state the README's quick start leaves. Commands run with ``bash -c`` in
that folder with the environment of a new terminal (no ``DAGSTER_HOME``, no sample keys, no
activated venv): what a command needs, it must say.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
# A new login shell's PATH on Debian: the venv is not activated.
FRESH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SERVER_START_TIMEOUT_SECONDS = 180.0
STOP_TIMEOUT_SECONDS = 20.0
OUTPUT_TAIL_LINES = 25

# Commands the suite does not run, and why (matched on the command's first words).
NOT_RUN: dict[str, str] = {
    "make test": "the project's test suite itself (about 10 min on 2 cores); .ci/run runs it",
    "make test-slow": "the slow end-to-end test suite (minutes); .ci/run runs it",
    "make test-docs": "this suite itself",
    "make check": "ruff, mypy and the whole test suite; .ci/run runs the tests",
    "make e2e": "its own end-to-end suite (about 3 min, installs Debian's chromium); "
    ".ci/run runs it",
    "make e2e-distributed": "its own end-to-end suite (PostgreSQL, Redis, Celery, apt installs); "
    ".ci/run runs it",
    "make bench": "a benchmark of a 1M-row day (minutes), not a test (bench/README.md)",
    "make bench-large": "a benchmark of 1M and 10M-row days (many minutes), not a test",
    "make docs-images": "installs LibreOffice and poppler with apt (network) and rewrites "
    "docs/*.png",
    "make clean": "deletes the venv and the instance: the state every other command needs",
    ".venv/bin/pytest": "a test file of export_assets_tests/, which `make test` runs",
    ".venv/bin/python bench/": "a benchmark (minutes, it starts its own dagster dev), not a test",
}


@dataclass
class Outcome:
    """What one command did."""

    status: str  # "passed", "failed", "not run"
    exit_code: int | None
    output: str
    seconds: float
    detail: str = ""


# The README's quick start: every other command runs in the state it leaves.
QUICK_START = "make run"
# Every outcome of the session, by command key, in the order run (for the summary table):
# (where it is written, the command on one line, what it did).
RESULTS: dict[str, tuple[str, str, Outcome]] = {}


@dataclass(frozen=True)
class Repo:
    """The copy of the repo the commands run in."""

    root: Path
    home: Path  # $HOME of the fresh shell

    @property
    def dagster_home(self) -> Path:
        return self.root / ".dagster"


def copy_repo(base: Path) -> Repo:
    """The working tree's files (tracked and new, not ignored) in ``base/repo``, mtimes kept."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=CHECKOUT,
        capture_output=True,
        check=True,
    )
    root = base / "repo"
    for name in listing.stdout.decode().split("\0"):
        source = CHECKOUT / name
        if not name or not source.is_file() or name.startswith(("docs_tests/", "export_assets/")):
            continue
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        # copy2 keeps mtimes, so make sees .venv/.installed as up to date as in the checkout.
        shutil.copy2(source, target)
    (root / ".venv").symlink_to(CHECKOUT / ".venv")
    # The venv's editable install imports the checkout's package whatever the folder: so do
    # `-m export_assets.definitions` and `-w workspace.yaml` here (one code, not two).
    (root / "export_assets").symlink_to(CHECKOUT / "export_assets")
    home = base / "home"
    home.mkdir()
    return Repo(root, home)


def fresh_env(repo: Repo, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A new terminal's environment: PATH, HOME, locale, user; nothing of Dagster or the sample."""
    env = {
        "PATH": FRESH_PATH,
        "HOME": str(repo.home),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "USER": os.environ.get("USER", "docs-reader"),
        "LOGNAME": os.environ.get("LOGNAME", os.environ.get("USER", "docs-reader")),
        "TMPDIR": str(repo.home),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra or {})
    return env


def venv_is_current(repo: Repo) -> str | None:
    """Why make would reinstall the venv from the copy (never let it), or None."""
    check = subprocess.run(
        ["make", "-q", ".venv/.installed"],  # noqa: S607
        cwd=repo.root,
        env=fresh_env(repo),
        capture_output=True,
        check=False,
    )
    if check.returncode == 0:
        return None
    return (
        "the checkout's .venv is older than pyproject.toml (make would reinstall it from the "
        "suite's copy): run `make install` in the checkout first"
    )


def not_run_reason(words: list[str]) -> str | None:
    """The reason a command is left out, from ``NOT_RUN``."""
    line = " ".join(words)
    for prefix, reason in NOT_RUN.items():
        if prefix.endswith("/"):
            if line.startswith(prefix):
                return reason
        elif words[: len(prefix.split())] == prefix.split() and (
            not prefix.startswith("make ") or len(words) == len(prefix.split())
        ):
            return reason
    return None


def command_words(text: str) -> list[str]:
    """The command's words without leading ``VAR=value`` assignments."""
    try:
        words = shlex.split(text.replace("\\\n", " "), comments=True)
    except ValueError:
        return []
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words.pop(0)
    return words


@dataclass(frozen=True)
class Server:
    """A long-running command: what to probe before stopping it."""

    http: tuple[str, int] | None  # host, port of a Dagster webserver
    daemon: bool  # a Dagster daemon that writes heartbeats to .dagster


def server_kind(words: list[str], repo: Repo) -> Server | None:
    """Whether a command starts a Dagster webserver or daemon (``make`` targets by recipe)."""
    if words[:1] == ["make"] and len(words) == 2:
        recipe = subprocess.run(  # noqa: S603 (the docs' own commands, in a temporary copy)
            ["make", "-n", words[1]],  # noqa: S607
            cwd=repo.root,
            env=fresh_env(repo),
            capture_output=True,
            text=True,
            check=False,
        )
        lines = [line for line in recipe.stdout.splitlines() if "dagster" in line]
        return _server_of(command_words(lines[-1])) if lines else None
    return _server_of(words)


def _server_of(words: list[str]) -> Server | None:
    programs = [Path(word).name for word in words]
    for index, program in enumerate(programs):
        after = words[index + 1 : index + 2]
        if (program == "dagster" and after == ["dev"]) or program == "dagster-webserver":
            return Server(http=_address(words[index:]), daemon=program == "dagster")
        if program == "dagster-daemon" and after == ["run"]:
            return Server(http=None, daemon=True)
    return None


def _address(words: list[str]) -> tuple[str, int]:
    host, port = "127.0.0.1", 3000
    for flag, value in itertools.pairwise(words):
        if flag in ("-h", "--host"):
            host = value
        elif flag in ("-p", "--port") and value.isdigit():
            port = int(value)
    return host, port


def run_command(text: str, repo: Repo, env: Mapping[str, str], timeout: float) -> Outcome:
    """``bash -c TEXT`` in the copy; its exit status and output (stdout then stderr).

    The command gets its own process group, so a timeout stops all it started (code servers).
    """
    started = time.monotonic()
    process = subprocess.Popen(  # noqa: S603 (the docs' own commands, in a temporary copy)
        ["bash", "-c", text],  # noqa: S607
        cwd=repo.root,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(process)
        stdout, stderr = process.communicate()
        return Outcome(
            "failed",
            None,
            stdout + stderr,
            time.monotonic() - started,
            f"still running after {timeout:.0f} s: stopped",
        )
    return Outcome(
        "passed" if process.returncode == 0 else "failed",
        process.returncode,
        stdout + stderr,
        time.monotonic() - started,
    )


def run_server(text: str, server: Server, repo: Repo, env: Mapping[str, str]) -> Outcome:
    """Start a long-running command, wait until it serves, stop its whole process group."""
    if server.http is not None and not _port_free(*server.http):
        host, port = server.http
        return Outcome(
            "not run",
            None,
            "",
            0.0,
            f"{host}:{port} is in use by another process "
            "(someone else's dagster dev?): not a fault of the docs",
        )
    started = time.monotonic()
    wall_start = time.time()
    log = repo.home / f"server-{int(wall_start * 1000)}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 (the docs' own commands, in a temporary copy)
            ["bash", "-c", text],  # noqa: S607
            cwd=repo.root,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    probes: list[tuple[str, Callable[[], bool]]] = []
    if server.http is not None:
        host, port = server.http
        probes.append((f"http://{host}:{port}/server_info", lambda: _http_ok(host, port)))
        probes.append(("the code location loaded", lambda: _location_loaded(host, port)))
    if server.daemon:
        probes.append(
            (
                "the daemon's heartbeat in .dagster",
                lambda: _heartbeat_since(repo.dagster_home, wall_start),
            )
        )
    try:
        detail = _wait(process, probes, started + SERVER_START_TIMEOUT_SECONDS)
    finally:
        _stop(process)
    output = log.read_text(errors="replace")
    seconds = time.monotonic() - started
    if detail:
        return Outcome("failed", process.returncode, output, seconds, detail)
    return Outcome("passed", 0, output, seconds, "ready: " + ", ".join(n for n, _ in probes))


def _wait(
    process: subprocess.Popen[bytes],
    probes: list[tuple[str, Callable[[], bool]]],
    deadline: float,
) -> str:
    """Empty when every probe passed in turn, else what was not reached."""
    for name, probe in probes:
        while True:
            if process.poll() is not None:
                return f"exited with status {process.returncode} before {name}"
            try:
                if probe():
                    break
            except LocationLoadError as exc:
                return f"the webserver is up but {exc}"
            except Exception:  # noqa: S110 (not up yet: refused connections, a young database)
                pass
            if time.monotonic() > deadline:
                return f"not ready after {SERVER_START_TIMEOUT_SECONDS:.0f} s: no {name}"
            time.sleep(1.0)
    return ""


def _stop(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGTERM the group we started (Ctrl-C's effect), then SIGKILL whatever is left."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _group_alive(process.pid):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    if process.poll() is None:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _http_ok(host: str, port: int) -> bool:
    url = f"http://{host}:{port}/server_info"
    with urllib.request.urlopen(url, timeout=5) as response:
        return bool(response.status == 200)


_LOCATIONS = (
    "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
    "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
)


def _location_loaded(host: str, port: int) -> bool:
    """Every code location of the webserver loaded; a load error is a failure, not a wait."""
    request = urllib.request.Request(
        f"http://{host}:{port}/graphql",
        data=json.dumps({"query": _LOCATIONS}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        entries = json.load(response)["data"]["workspaceOrError"]["locationEntries"]
    if not entries or any(entry["loadStatus"] != "LOADED" for entry in entries):
        return False
    errors = [e for e in entries if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"]
    if errors:
        names = [
            f"{e['name']}: {_first_line(e['locationOrLoadError'].get('message'))}" for e in errors
        ]
        raise LocationLoadError("; ".join(names))
    return True


def _first_line(message: str | None) -> str:
    return (message or "no message").strip().splitlines()[0]


class LocationLoadError(RuntimeError):
    """The webserver is up but a code location failed to load."""


def _heartbeat_since(dagster_home: Path, since: float) -> bool:
    """The daemon wrote heartbeats for its scheduler and sensors after ``since``."""
    from dagster import DagsterInstance

    if not (dagster_home / "dagster.yaml").is_file():
        return False
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        beats = instance.get_daemon_heartbeats()
    fresh = {name for name, beat in beats.items() if beat.timestamp >= since}
    return {"SCHEDULER", "SENSOR"} <= fresh


def tail(text: str, lines: int = OUTPUT_TAIL_LINES) -> str:
    """The last lines of a command's output, for a failure message."""
    return "\n".join(text.rstrip().splitlines()[-lines:])
