"""Whole-call deadlines of the notifier: hostile servers on 127.0.0.1 never hold a send.

Each server here is a real TCP server started by the test: one that drips a byte a second
(so no single socket read ever times out), one that never answers, one whose listen backlog
is full (connect itself hangs), SMTP servers that drip their greeting, stall after EHLO or in
the STARTTLS handshake. The bound asserted is the one the issue names (the deadline plus a
margin), far from the ~0.1 s the notifier needs past its deadline.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dagster import DagsterEventType, DagsterInstance, build_run_status_sensor_context
from pydantic import ValidationError

from export_assets.defs.operations.sensors import export_failure_sensor
from export_assets.defs.resources.notifier import Notification, Notifier
from export_assets_tests.s3_server import HOST, free_port
from export_assets_tests.test_notify import (
    SMTP_PASSWORD,
    SMTP_USER,
    WEBHOOK_KEY,
    _Mailbox,
    _Received,
    failed_run,
    running_smtp_server,
    running_webhook_server,
)

TIMEOUT = 2.0  # seconds: short, so that every test here takes about this long
MARGIN = 2.0  # the bound the issue names: abandoned at the deadline, give or take
QUERY_SECRET = "query-token-9b1c"
Serve = Callable[[socket.socket, "HostileServer"], None]


class HostileServer:
    """A TCP server on 127.0.0.1 that runs ``serve`` on each connection it accepts."""

    def __init__(self, serve: Serve | None, backlog: int = 16) -> None:
        self.listener = socket.create_server((HOST, 0), backlog=backlog)
        self.port: int = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.client_closed = threading.Event()  # the notifier closed its socket
        self.received = bytearray()
        self._serve = serve
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        if serve is not None:
            self.listener.settimeout(0.1)
            self._spawn(self._accept)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._sockets.append(connection)
            self._spawn(self._handle, connection)

    def _handle(self, connection: socket.socket) -> None:
        assert self._serve is not None
        try:
            self._serve(connection, self)
        except OSError:
            self.client_closed.set()  # a reset or a broken pipe: the notifier is gone

    def fill_backlog(self) -> None:
        """Connect until the listen queue is full: from then on, connecting hangs."""
        while True:
            filler = socket.socket()
            filler.settimeout(0.3)
            try:
                filler.connect((HOST, self.port))
            except TimeoutError:
                filler.close()
                return
            self._sockets.append(filler)

    def read_some(self, connection: socket.socket, until: bytes = b"\r\n\r\n") -> None:
        """Read what the client sends until ``until`` has arrived (or the server stops)."""
        connection.settimeout(0.1)
        while until not in self.received and not self.stopping.is_set():
            try:
                data = connection.recv(65536)
            except TimeoutError:
                continue
            if not data:
                self.client_closed.set()
                return
            self.received += data

    def closed_within(self, connection: socket.socket, seconds: float) -> bool:
        """Wait ``seconds`` for the client to hang up; True (and noted) when it did."""
        connection.settimeout(seconds)
        try:
            data = connection.recv(65536)
        except TimeoutError:
            return False
        self.received += data
        if not data:
            self.client_closed.set()
        return not data

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()
        for thread in self._threads:
            thread.join(5)
        for sock in self._sockets:
            sock.close()


def dripping(prefix: bytes, *, reads_first: bytes | None) -> Serve:
    """Read the request (unless the server speaks first), then send a byte every second."""

    def serve(connection: socket.socket, server: HostileServer) -> None:
        if reads_first is not None:
            server.read_some(connection, reads_first)
        for byte in itertools.chain(prefix, itertools.repeat(ord("a"))):
            if server.stopping.is_set():
                return
            connection.sendall(bytes([byte]))
            if server.closed_within(connection, 1.0):
                return

    return serve


def silent(*, greeting: bytes = b"", reads_first: bytes | None = None) -> Serve:
    """Send ``greeting``, read up to ``reads_first``, then never answer again."""

    def serve(connection: socket.socket, server: HostileServer) -> None:
        connection.sendall(greeting)
        if reads_first is not None:
            server.read_some(connection, reads_first)
        while not server.stopping.is_set() and not server.closed_within(connection, 0.2):
            pass

    return serve


def starttls_then_stall(connection: socket.socket, server: HostileServer) -> None:
    """Offer STARTTLS, accept it, then never answer the TLS ClientHello."""
    connection.sendall(b"220 stall.test ESMTP\r\n")
    server.read_some(connection, b"\r\n")
    connection.sendall(b"250-stall.test\r\n250 STARTTLS\r\n")
    server.read_some(connection, b"STARTTLS\r\n")
    connection.sendall(b"220 go ahead\r\n")
    silent()(connection, server)


@pytest.fixture
def hostile() -> Iterator[Callable[..., HostileServer]]:
    """Start hostile servers; every one is stopped (threads joined, sockets closed) after."""
    servers: list[HostileServer] = []

    def start(serve: Serve | None, backlog: int = 16) -> HostileServer:
        servers.append(HostileServer(serve, backlog))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


class _Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message: str) -> None:
        self.warnings.append(message)


def email_to(port: int, **settings: Any) -> dict[str, Any]:
    return {
        "smtp_host": HOST,
        "smtp_port": port,
        "smtp_starttls": False,
        "smtp_user": SMTP_USER,
        "smtp_password": SMTP_PASSWORD,
        "email_from": "exports@example.test",
        "email_to": ["ops@example.test"],
        **settings,
    }


def webhook_to(url: str) -> dict[str, Any]:
    return {"webhook_url": url, "webhook_secret": WEBHOOK_KEY}


def timed_send(notifier: Notifier, log: _Log) -> tuple[list[str], float]:
    started = time.monotonic()
    delivered = notifier.send(Notification("subject", "text", {"event": "test"}), log)
    return delivered, time.monotonic() - started


def assert_nothing_left(*servers: HostileServer) -> None:
    """No notifier thread outlives ``send``, and every hostile server saw its socket closed."""
    assert not [t.name for t in threading.enumerate() if t.name.startswith("notify-")]
    for server in servers:
        assert server.client_closed.wait(2), "the notifier left its socket open"


@pytest.mark.parametrize(
    ("server_kind", "step"),
    [
        ("drips its headers, a byte a second", "waiting for the answer"),
        ("accepts and never answers", "waiting for the answer"),
        ("never accepts (listen backlog full)", f"connecting to {HOST}"),
    ],
)
def test_a_hostile_webhook_is_abandoned_at_its_deadline_and_email_still_goes(
    hostile: Callable[..., HostileServer], server_kind: str, step: str
) -> None:
    if server_kind.startswith("drips"):
        server = hostile(dripping(b"HTTP/1.1 200 OK\r\nX-Drip: ", reads_first=b"\r\n\r\n"))
    elif server_kind.startswith("accepts"):
        server = hostile(silent(reads_first=b"\r\n\r\n"))
    else:
        server = hostile(None, backlog=0)
        server.fill_backlog()
    log = _Log()
    url = f"http://{HOST}:{server.port}/hooks/exports?token={QUERY_SECRET}"
    with running_smtp_server() as (smtp_port, mailbox):
        notifier = Notifier(**email_to(smtp_port), **webhook_to(url), timeout_seconds=TIMEOUT)
        delivered, elapsed = timed_send(notifier, log)

    assert elapsed < TIMEOUT + MARGIN, f"{server_kind}: send took {elapsed:.1f} s"
    assert delivered == ["email"]
    assert len(mailbox.messages) == 1
    [warning] = log.warnings
    assert warning.startswith(
        f"notification webhook http://{HOST}:{server.port}/hooks/exports?... failed (no "
        f"complete exchange within its {TIMEOUT:g} s deadline (timeout_seconds): abandoned "
        f"while {step}"
    )
    assert "check EXPORT_WEBHOOK_URL and that the receiver answers" in warning
    assert "the export is not affected" in warning
    assert QUERY_SECRET not in warning
    assert WEBHOOK_KEY not in warning
    if not server_kind.startswith("never"):
        assert b"POST /hooks/exports?token=" in server.received  # the request did go out
        assert_nothing_left(server)
    else:
        assert_nothing_left()


@pytest.mark.parametrize(
    ("server_kind", "step"),
    [
        ("drips its greeting, a byte a second", "waiting for the server's greeting"),
        ("stalls after EHLO", "waiting for the answer to EHLO"),
        ("stalls in the STARTTLS handshake", "STARTTLS"),
        ("never accepts (listen backlog full)", f"connecting to {HOST}"),
    ],
)
def test_a_hostile_smtp_server_is_abandoned_at_its_deadline_and_the_webhook_still_goes(
    hostile: Callable[..., HostileServer], server_kind: str, step: str
) -> None:
    starttls = False
    if server_kind.startswith("drips"):
        server = hostile(dripping(b"220 drip.test ", reads_first=None))
    elif server_kind.startswith("stalls after"):
        server = hostile(silent(greeting=b"220 stall.test ESMTP\r\n", reads_first=b"\r\n"))
    elif server_kind.startswith("stalls in"):
        server, starttls = hostile(starttls_then_stall), True
    else:
        server = hostile(None, backlog=0)
        server.fill_backlog()
    log = _Log()
    with running_webhook_server() as (url, received):
        notifier = Notifier(
            **email_to(server.port, smtp_starttls=starttls),
            **webhook_to(url),
            timeout_seconds=TIMEOUT,
        )
        delivered, elapsed = timed_send(notifier, log)

    assert elapsed < TIMEOUT + MARGIN, f"{server_kind}: send took {elapsed:.1f} s"
    assert delivered == ["webhook"]
    assert len(received.posts) == 1
    [warning] = log.warnings
    assert warning.startswith(
        f"notification email to {HOST}:{server.port} failed (no complete exchange within its "
        f"{TIMEOUT:g} s deadline (timeout_seconds): abandoned while {step}"
    )
    assert "check EXPORT_SMTP_HOST/EXPORT_SMTP_PORT and that the SMTP server answers" in warning
    assert SMTP_PASSWORD not in warning
    if server_kind.startswith("stalls after"):
        assert server.received.lower().startswith(b"ehlo ")
    if not server_kind.startswith("never"):
        assert_nothing_left(server)
    else:
        assert_nothing_left()


def test_both_channels_hanging_cost_one_deadline_not_two(
    hostile: Callable[..., HostileServer],
) -> None:
    """The channels run at once: one hanging channel never adds its time to the other's."""
    timeout = 3.0  # one after the other they would take 6 s, well past the bound
    smtp = hostile(dripping(b"220 drip.test ", reads_first=None))
    web = hostile(dripping(b"HTTP/1.1 200 OK\r\n", reads_first=b"\r\n\r\n"))
    log = _Log()
    notifier = Notifier(
        **email_to(smtp.port),
        **webhook_to(f"http://{HOST}:{web.port}/hook"),
        timeout_seconds=timeout,
    )
    delivered, elapsed = timed_send(notifier, log)

    assert elapsed < timeout + MARGIN, f"send took {elapsed:.1f} s"
    assert delivered == []
    assert [w.split(" failed ")[0] for w in log.warnings] == [
        f"notification email to {HOST}:{smtp.port}",
        f"notification webhook http://{HOST}:{web.port}/hook",
    ]
    assert_nothing_left(smtp, web)


def test_the_failure_sensor_tick_returns_at_the_deadline_and_emails(
    instance: DagsterInstance,
    tmp_path: Path,
    hostile: Callable[..., HostileServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through Dagster: the failure sensor on a real failed run, its webhook dripping."""
    run_id = failed_run(instance, tmp_path)
    [failure] = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
    assert failure.dagster_event is not None
    web = hostile(dripping(b"HTTP/1.1 200 OK\r\nX-Drip: ", reads_first=b"\r\n\r\n"))
    with running_smtp_server() as (smtp_port, mailbox):
        notifier = Notifier(
            **email_to(smtp_port),
            **webhook_to(f"http://{HOST}:{web.port}/hook"),
            timeout_seconds=TIMEOUT,
        )
        context = build_run_status_sensor_context(
            sensor_name="export_failure_sensor",
            dagster_event=failure.dagster_event,
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(run_id),  # type: ignore[arg-type]
            resources={"notifier": notifier},
        ).for_run_failure()
        started = time.monotonic()
        context.log.addHandler(caplog.handler)  # the sensor's own logger (a logging.Logger)
        export_failure_sensor(context)
        elapsed = time.monotonic() - started

    assert elapsed < TIMEOUT + MARGIN, f"the sensor tick took {elapsed:.1f} s"
    [mail] = mailbox.messages
    assert f"Run {run_id} of " in mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
    [warning] = [r for r in caplog.records if r.getMessage().startswith("notification ")]
    assert warning.levelno == logging.WARNING
    assert (
        f"notification webhook http://{HOST}:{web.port}/hook failed (no complete exchange "
        f"within its {TIMEOUT:g} s deadline" in warning.getMessage()
    )
    assert any(
        f"failure of run {run_id} notified by email" in r.getMessage() for r in caplog.records
    )
    assert_nothing_left(web)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (the certificate is its own CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def server_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A TLS server context for 127.0.0.1 whose certificate the notifier trusts."""
    cert, key = _self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # read by ssl.create_default_context()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def test_an_https_webhook_that_drips_after_the_handshake_is_abandoned(
    hostile: Callable[..., HostileServer], server_tls: ssl.SSLContext
) -> None:
    """The deadline holds inside TLS too: each TLS read gets only the time left."""

    def serve(connection: socket.socket, server: HostileServer) -> None:
        connection.settimeout(TIMEOUT)
        tls = server_tls.wrap_socket(connection, server_side=True)
        dripping(b"HTTP/1.1 200 OK\r\nX-Drip: ", reads_first=b"\r\n\r\n")(tls, server)

    server = hostile(serve)
    log = _Log()
    url = f"https://{HOST}:{server.port}/hook"
    delivered, elapsed = timed_send(Notifier(**webhook_to(url), timeout_seconds=TIMEOUT), log)

    assert elapsed < TIMEOUT + MARGIN, f"send took {elapsed:.1f} s"
    assert delivered == []
    assert b"POST /hook" in server.received  # the handshake succeeded, the request went out
    [warning] = log.warnings
    assert warning.startswith(
        f"notification webhook {url} failed (no complete exchange within its {TIMEOUT:g} s "
        "deadline (timeout_seconds): abandoned while waiting for the answer"
    )
    assert_nothing_left(server)


def test_starttls_and_https_deliver_through_the_deadline_sockets(
    server_tls: ssl.SSLContext,
) -> None:
    """The TLS paths (STARTTLS, HTTPS) still deliver, with the certificate verified."""

    mailbox = _Mailbox()
    controller = Controller(
        mailbox,
        hostname=HOST,
        port=free_port(),
        tls_context=server_tls,
        require_starttls=True,
        authenticator=mailbox.authenticate,
        auth_required=True,
    )
    received = _Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.posts.append(
                (dict(self.headers.items()), self.rfile.read(int(self.headers["Content-Length"])))
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    https = ThreadingHTTPServer((HOST, 0), Handler)
    https.socket = server_tls.wrap_socket(https.socket, server_side=True)
    thread = threading.Thread(target=https.serve_forever, daemon=True)
    controller.start()
    thread.start()
    try:
        log = _Log()
        notifier = Notifier(
            **email_to(controller.port, smtp_starttls=True),
            **webhook_to(f"https://{HOST}:{https.server_address[1]}/hook"),
            timeout_seconds=TIMEOUT,
        )
        delivered, _ = timed_send(notifier, log)
    finally:
        controller.stop()
        https.shutdown()
        https.server_close()
        thread.join()

    assert log.warnings == []
    assert delivered == ["email", "webhook"]
    assert mailbox.logins == [(SMTP_USER, SMTP_PASSWORD)]
    assert len(mailbox.messages) == 1
    assert len(received.posts) == 1


def test_a_webhook_error_answer_is_a_warning_with_the_status() -> None:
    log = _Log()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_error(503, "Receiver Busy")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://{HOST}:{server.server_address[1]}/hook"
        delivered, _ = timed_send(Notifier(**webhook_to(url), timeout_seconds=TIMEOUT), log)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert delivered == []
    assert log.warnings == [
        f"notification webhook {url} failed (HTTPException: the receiver answered HTTP 503 "
        "Receiver Busy); check EXPORT_WEBHOOK_URL and that the receiver answers; the export "
        "is not affected"
    ]


@pytest.mark.parametrize("timeout", [0, -1])
def test_a_timeout_that_is_not_positive_is_refused(timeout: float) -> None:
    with pytest.raises(ValidationError, match="timeout_seconds") as refused:
        Notifier(webhook_url="http://127.0.0.1:9/hook", timeout_seconds=timeout)
    assert "greater than 0" in str(refused.value)
    assert f"input_value={timeout}" in str(refused.value)
