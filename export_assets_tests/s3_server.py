"""A real S3 endpoint for tests: moto's server as a separate process on 127.0.0.1.

Register the session fixture in conftest.py::

    from export_assets_tests import s3_server

    @pytest.fixture(scope="session")
    def moto_server() -> Iterator[s3_server.MotoServer]:
        # One moto S3 server on 127.0.0.1 for the whole session, stopped at its end.
        yield from s3_server.moto_server()

Tests then build clients the way production does (``S3Resource(...).get_client()``) with
``moto_server.resource()``, or call ``moto_server.client()``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster_aws.s3 import S3Resource

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

HOST = "127.0.0.1"
REGION = "us-east-1"
# Dummy credentials: moto accepts any unless IAM authentication is switched on.
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing-secret"
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 5.0
START_ATTEMPTS = 3  # a free port can be taken between choosing it and the server binding it


_CLIENTS: dict[int, S3Client] = {}  # the default client of each server, by port


class MotoServerError(RuntimeError):
    """The moto server did not start."""


@dataclass(frozen=True)
class MotoServer:
    """A running moto server process and how to talk to it."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:{port}``."""
        return f"http://{HOST}:{self.port}"

    def resource(self, **overrides: Any) -> S3Resource:
        """An ``S3Resource`` pointed at this server, as production configures one."""
        settings: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "region_name": REGION,
            "aws_access_key_id": ACCESS_KEY_ID,
            "aws_secret_access_key": SECRET_ACCESS_KEY,
            "max_attempts": 1,
        }
        return S3Resource(**(settings | overrides))

    def client(self, **overrides: Any) -> S3Client:
        """A boto3 S3 client for this server, built by ``S3Resource.get_client``.

        Without overrides, one client per server and process, shared (boto3 clients are
        thread-safe; building one costs ~0.1 s of CPU).
        """
        if not overrides and self.port in _CLIENTS:
            return _CLIENTS[self.port]
        client: S3Client = self.resource(**overrides).get_client()
        if not overrides:
            _CLIENTS[self.port] = client
        return client

    def reset(self) -> None:
        """Forget every bucket, object and IAM user (moto's own reset API)."""
        self._post("/moto-api/reset", b"")

    @contextmanager
    def iam_authentication(self) -> Iterator[None]:
        """Inside the block the server checks signatures and IAM permissions, as AWS does.

        Clients with the dummy credentials are refused meanwhile; create IAM users and their
        access keys before entering.
        """
        previous = json.loads(self._post("/moto-api/reset-auth", b"0"))
        try:
            yield
        finally:
            self._post(
                "/moto-api/reset-auth",
                previous["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"].encode(),
            )

    def _post(self, path: str, body: bytes) -> bytes:
        # A content type other than a form's, so the server reads the body as raw data.
        request = urllib.request.Request(  # noqa: S310 (always http://127.0.0.1)
            self.endpoint_url + path,
            data=body,
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            data: bytes = response.read()
            return data


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def start_moto_server(log_dir: Path) -> MotoServer:
    """Start ``python -m moto.server`` on a free port and wait until it answers.

    Its output goes to a file in ``log_dir`` (never a pipe nobody reads, which would fill up
    and stall the server).
    """
    failures: list[str] = []
    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port()
        log = log_dir / f"moto-server-{port}.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        server = MotoServer(process, port, log)
        try:
            _wait_until_answering(server)
        except MotoServerError as exc:
            stop_moto_server(server)
            failures.append(f"attempt {attempt} (port {port}): {exc}")
            continue
        return server
    raise MotoServerError("moto server did not start:\n" + "\n".join(failures))


def _wait_until_answering(server: MotoServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise MotoServerError(
                f"exited with code {server.process.returncode}: {_tail(server.log)}"
            )
        try:
            with urllib.request.urlopen(  # noqa: S310 (always http://127.0.0.1)
                f"{server.endpoint_url}/moto-api/data.json", timeout=1
            ) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise MotoServerError(f"not answering after {START_TIMEOUT_SECONDS:.0f} s: {_tail(server.log)}")


def _tail(log: Path, characters: int = 2000) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return text[-characters:] or "(no output)"


def stop_moto_server(server: MotoServer, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """Terminate the server, and kill it if it has not exited within ``timeout`` seconds."""
    process = server.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


@contextmanager
def running_moto_server() -> Iterator[MotoServer]:
    """A moto server for the duration of the block; stopped on exit, also on errors."""
    with tempfile.TemporaryDirectory(prefix="moto-server-") as log_dir:
        server = start_moto_server(Path(log_dir))
        try:
            yield server
        finally:
            stop_moto_server(server)


def moto_server() -> Iterator[MotoServer]:
    """Body of the session fixture ``moto_server`` (see the module docstring)."""
    with running_moto_server() as server:
        yield server


def read_log(server: MotoServer) -> str:
    """The server's output so far, for a failing test's message."""
    return _tail(server.log, characters=10_000)
