"""Real processes for the end-to-end suites: start them in their own session, stop them all.

Every process is started with ``start_new_session=True``, so it and everything it spawns
(dagster dev's webserver, daemon, code servers and run workers; celery's pool children)
share one process group that ``stop`` kills as a whole, on success and on failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
SAMPLE_END = "2026-11-20"
BACKFILL_DAYS = ("2026-11-17", "2026-11-18", "2026-11-19")
REQUESTED_BY_TAG = "export/requested_by"
REQUESTED_BY = "e2e-suite"
STOP_TIMEOUT_SECONDS = 20.0
SERVICES = ROOT / "deploy" / "services.sh"

T = TypeVar("T")


class StackError(RuntimeError):
    """A process of the stack did not start, or a wait ran out."""


def service_env(state: Path) -> dict[str, str]:
    """The variables deploy/services.sh wrote into ``state`` (``export NAME=value`` lines)."""
    env = {}
    for line in (state / "env").read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value
    return env


@contextmanager
def started_services(state: Path) -> Iterator[dict[str, str]]:
    """PostgreSQL and Redis on 127.0.0.1 (deploy/services.sh, state in ``state``): their
    variables; stopped, their data deleted, on the way out, also after a failed start."""
    try:
        subprocess.run([str(SERVICES), "start", str(state)], check=True)  # noqa: S603
        yield service_env(state)
    finally:
        subprocess.run([str(SERVICES), "stop", str(state)], check=True)  # noqa: S603


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Process:
    """A started process group, its log file and what it is for."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        """The end of the log, for error messages."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.popen.poll() is None

    def group_pids(self) -> set[int]:
        """Every live process in this process group (the leader and all it spawned)."""
        pids: set[int] = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.getpgid(int(entry.name)) != self.popen.pid:
                    continue
                # A zombie has ended; only its parent's wait (or init's) is left to do.
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
                pids.add(int(entry.name))
            except (ProcessLookupError, PermissionError, FileNotFoundError):
                continue
        return pids


def start(name: str, args: Sequence[str], env: Mapping[str, str], logs: Path) -> Process:
    """Start ``args`` in a new session (its own process group), output to ``logs/name.log``."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(  # noqa: S603 (fixed argument lists built by the suite)
            list(args),
            cwd=ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(name, popen, log)


def stop(process: Process) -> None:
    """SIGTERM the whole group, wait, SIGKILL what is left; no process survives this."""
    group = process.popen.pid
    with suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.popen.wait(timeout=STOP_TIMEOUT_SECONDS)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while process.group_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    if process.group_pids():
        with suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        # SIGKILL is delivered at once but a process takes a moment to be gone from /proc.
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while process.group_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
    if process.popen.poll() is None:
        process.popen.wait(timeout=STOP_TIMEOUT_SECONDS)


@contextmanager
def running(processes: list[Process]) -> Iterator[list[Process]]:
    """Stop every process of ``processes`` (also those appended later) on the way out."""
    try:
        yield processes
    finally:
        for process in reversed(processes):
            stop(process)
        left = {p.name: p.group_pids() for p in processes if p.group_pids()}
        if left:
            raise StackError(f"processes still running after stop: {left}")


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float, watch: Sequence[Process] = ()
) -> T:
    """Poll ``probe`` until it returns a value; fail naming ``what`` (and a dead process's log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in watch:
            if not process.alive():
                raise StackError(
                    f"{process.name} exited while waiting for {what}:\n{process.tail()}"
                )
        value = probe()
        if value is not None:
            return value
        time.sleep(1.0)
    logs = "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in watch)
    raise StackError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")


def http_ok(url: str) -> bool | None:
    """True when ``url`` answers 200, None otherwise (for ``wait_for``)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (127.0.0.1 only)
            return True if response.status == 200 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
    ... on PartitionSetNotFoundError { message }
  }
}"""
LOCATIONS = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def graphql(port: int, document: str, variables: Mapping[str, Any] | None = None) -> Any:
    """POST one GraphQL document to the webserver on ``port``, as the UI does: its ``data``
    (an error in the answer raises StackError)."""
    body = json.dumps({"query": document, "variables": dict(variables or {})}).encode()
    request = urllib.request.Request(
        f"http://{HOST}:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (loopback)
        answer = json.loads(response.read())
    if answer.get("errors"):
        raise StackError(f"GraphQL errors: {answer['errors']}")
    return answer["data"]


def locations_loaded(port: int, names: Iterable[str]) -> bool | None:
    """True once the webserver on ``port`` has loaded every code location in ``names`` (one
    that failed to load raises StackError)."""
    entries = graphql(port, LOCATIONS)["workspaceOrError"]["locationEntries"]
    loaded = set()
    for entry in entries:
        if entry["loadStatus"] == "LOADED":
            if entry["locationOrLoadError"]["__typename"] != "RepositoryLocation":
                raise StackError(f"{entry['name']} failed to load: {entry['locationOrLoadError']}")
            loaded.add(entry["name"])
    return True if set(names) <= loaded else None


def write_sample(out: Path) -> Path:
    """A sample ProxyWhirl deployment (60 proxies, 5 days to SAMPLE_END); its database."""
    subprocess.run(  # noqa: S603
        [
            str(BIN / "export-assets"),
            "sample-data",
            "--out",
            str(out),
            "--proxies",
            "60",
            "--days",
            "5",
            "--end-date",
            SAMPLE_END,
            "--validations-per-day",
            "400",
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    return out / "proxies.db"


def base_env(dagster_home: Path, database: Path, exports: Path) -> dict[str, str]:
    """The environment of every process: this venv first, the sample, the destination."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "EXPORT_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        DAGSTER_HOME=str(dagster_home),
        PROXYWHIRL_DB=str(database),
        EXPORT_DESTINATION=str(exports),
        PYTHONUNBUFFERED="1",
    )
    return env


def verify_partition(exports: Path, asset: str, partition: str) -> dict[str, Any]:
    """Read a published partition back: its manifest, and every file's bytes and sha256."""
    folder = exports / asset / f"dt={partition}"
    manifest_path = folder / "_manifest.json"
    assert manifest_path.is_file(), f"no manifest for {asset} {partition} in {folder}"
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    assert (manifest["asset"], manifest["partition"]) == (asset, partition)
    assert manifest["files"], f"{manifest_path} lists no files"
    for entry in manifest["files"]:
        data = (folder / entry["path"]).read_bytes()
        assert len(data) == entry["bytes"], f"{asset} {partition} {entry['path']}: size"
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], (
            f"{asset} {partition} {entry['path']}: sha256 differs from the manifest"
        )
    assert sum(e["rows"] for e in manifest["files"]) == manifest["total_rows"]
    return manifest
