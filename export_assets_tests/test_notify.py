"""Failure notifications: a real failed run, a real SMTP server and a real webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from dagster import (
    DagsterEventType,
    DagsterInstance,
    build_run_status_sensor_context,
    materialize,
)

from export_assets.defs.exports import proxy_list, validation_events
from export_assets.defs.operations.sensors import (
    export_failure_sensor,
    export_success_digest_sensor,
)
from export_assets.defs.resources.notifier import SIGNATURE_HEADER, Notification, Notifier
from export_assets.lib.sample import SampleDeployment
from export_assets_tests.conftest import export_resources
from export_assets_tests.s3_server import HOST, free_port

SMTP_USER = "exporter"
SMTP_PASSWORD = "smtp-pass-7f3a9c"
WEBHOOK_KEY = "webhook-key-5d2e81"
PARTITION = "2026-11-20"


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.logins: list[tuple[str, str]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login = (data.login.decode(), data.password.decode())
        self.logins.append(login)
        return AuthResult(success=login == (SMTP_USER, SMTP_PASSWORD))


@contextmanager
def running_smtp_server() -> Iterator[tuple[int, _Mailbox]]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that requires a login."""
    mailbox = _Mailbox()
    port = free_port()
    controller = Controller(
        mailbox,
        hostname=HOST,
        port=port,
        authenticator=mailbox.authenticate,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield port, mailbox
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, _Mailbox]]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that requires a login."""
    with running_smtp_server() as server:
        yield server


@dataclass
class _Received:
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@contextmanager
def running_webhook_server() -> Iterator[tuple[str, _Received]]:
    """A real HTTP server on 127.0.0.1 that records every POST."""
    received = _Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.posts.append((dict(self.headers.items()), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}/hooks/exports", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def webhook_server() -> Iterator[tuple[str, _Received]]:
    """A real HTTP server on 127.0.0.1 that records every POST."""
    with running_webhook_server() as server:
        yield server


def notifier(smtp_port: int, webhook_url: str) -> Notifier:
    return Notifier(
        smtp_host=HOST,
        smtp_port=smtp_port,
        smtp_starttls=False,
        smtp_user=SMTP_USER,
        smtp_password=SMTP_PASSWORD,
        email_from="exports@example.test",
        email_to=["ops@example.test"],
        webhook_url=webhook_url,
        webhook_secret=WEBHOOK_KEY,
        webserver_url="http://dagster.example.test:3000/",
    )


def failed_run(instance: DagsterInstance, tmp_path: Path) -> str:
    """A real export run that fails: PROXYWHIRL_DB points at no file."""
    result = materialize(
        [proxy_list],
        partition_key=PARTITION,
        instance=instance,
        raise_on_error=False,
        resources=export_resources(tmp_path / "missing" / "proxies.db", tmp_path / "exports"),
        tags={"export/requested_by": "alice"},
    )
    assert not result.success
    return result.run_id


def test_a_failed_run_sends_one_email_and_one_signed_webhook(
    instance: DagsterInstance,
    tmp_path: Path,
    smtp_server: tuple[int, _Mailbox],
    webhook_server: tuple[str, _Received],
) -> None:
    run_id = failed_run(instance, tmp_path)
    [failure] = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
    assert failure.dagster_event is not None
    port, mailbox = smtp_server
    url, received = webhook_server
    context = build_run_status_sensor_context(
        sensor_name="export_failure_sensor",
        dagster_event=failure.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),  # type: ignore[arg-type]
        resources={"notifier": notifier(port, url)},
    ).for_run_failure()

    export_failure_sensor(context)

    [mail] = mailbox.messages
    assert mailbox.logins == [(SMTP_USER, SMTP_PASSWORD)]
    assert mail["To"] == "ops@example.test"
    assert mail["From"] == "exports@example.test"
    job = instance.get_run_by_id(run_id).job_name  # type: ignore[union-attr]
    assert mail["Subject"] == f"[export failed] {job} {PARTITION}: proxy_list"
    text = mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
    missing = tmp_path / "missing" / "proxies.db"
    assert f"Run {run_id} of {job} failed." in text
    assert f"Partition: {PARTITION}" in text
    assert "Requested by: alice" in text
    assert f"Asset proxy_list: ProxyWhirl database {missing} does not exist" in text
    assert f"http://dagster.example.test:3000/runs/{run_id}" in text
    assert "Traceback" not in text
    assert SMTP_PASSWORD not in text
    assert WEBHOOK_KEY not in text

    [(headers, body)] = received.posts
    expected = "sha256=" + hmac.new(WEBHOOK_KEY.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
    assert headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["event"] == "export_failed"
    assert payload["run_id"] == run_id
    assert payload["job"] == job
    assert payload["partition"] == PARTITION
    assert payload["assets"] == ["proxy_list"]
    assert payload["error"].startswith(f"ProxyWhirl database {missing} does not exist")
    assert payload["run_url"] == f"http://dagster.example.test:3000/runs/{run_id}"
    assert SMTP_PASSWORD not in body.decode()
    assert WEBHOOK_KEY not in body.decode()


def test_a_webhook_signed_with_another_key_does_not_verify(
    webhook_server: tuple[str, _Received],
) -> None:
    url, received = webhook_server
    sent = Notifier(webhook_url=url, webhook_secret=WEBHOOK_KEY).send(
        Notification("subject", "text", {"event": "test"})
    )
    assert sent == ["webhook"]
    [(headers, body)] = received.posts
    forged = "sha256=" + hmac.new(b"another-key", body, hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(headers[SIGNATURE_HEADER], forged)


class _Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message: str) -> None:
        self.warnings.append(message)


def test_unreachable_servers_log_a_warning_and_never_raise() -> None:
    closed = free_port()  # nothing listens there
    log = _Log()
    unreachable = Notifier(
        smtp_host=HOST,
        smtp_port=closed,
        smtp_starttls=False,
        smtp_user=SMTP_USER,
        smtp_password=SMTP_PASSWORD,
        email_to=["ops@example.test"],
        webhook_url=f"http://{SMTP_USER}:{SMTP_PASSWORD}@{HOST}:{closed}/hook",
        webhook_secret=WEBHOOK_KEY,
        timeout_seconds=2,
    )
    assert unreachable.send(Notification("s", "t"), log) == []
    [email, webhook] = log.warnings
    assert f"notification email to {HOST}:{closed} failed" in email
    assert f"notification webhook http://{HOST}:{closed}/hook failed" in webhook
    assert all("the export is not affected" in w for w in log.warnings)
    assert not any(SMTP_PASSWORD in w or WEBHOOK_KEY in w for w in log.warnings)


def test_an_unconfigured_notifier_sends_nothing() -> None:
    assert Notifier().send(Notification("s", "t"), _Log()) == []


def test_a_scheduled_success_sends_one_digest(
    instance: DagsterInstance,
    tmp_path: Path,
    sample_deployment: SampleDeployment,
    webhook_server: tuple[str, _Received],
) -> None:
    url, received = webhook_server
    result = materialize(
        [proxy_list, validation_events],
        partition_key=PARTITION,
        instance=instance,
        resources=export_resources(sample_deployment.database, tmp_path / "exports"),
        tags={"dagster/schedule_name": "daily_export_schedule"},
    )
    assert result.success
    [success] = instance.all_logs(result.run_id, of_type=DagsterEventType.RUN_SUCCESS)
    assert success.dagster_event is not None
    context = build_run_status_sensor_context(
        sensor_name="export_success_digest_sensor",
        dagster_event=success.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),  # type: ignore[arg-type]
        resources={
            "notifier": Notifier(webhook_url=url, webhook_secret=WEBHOOK_KEY, success_digest=True)
        },
    )

    export_success_digest_sensor(context)

    [(_, body)] = received.posts  # one message for the run, not one per asset
    payload = json.loads(body)
    assert payload["event"] == "export_succeeded"
    assert payload["partition"] == PARTITION
    assert sorted(e["asset"] for e in payload["exported"]) == ["proxy_list", "validation_events"]
    assert all(e["rows"] >= 1 and e["bytes"] > 0 for e in payload["exported"])
