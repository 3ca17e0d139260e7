"""Notifications: email over SMTP and a signed JSON webhook, as one Dagster resource.

A channel that is not configured is skipped; a channel that cannot reach its server logs a
warning and never fails what called it. Secrets (the SMTP password, the webhook key) come
from ``EnvVar``s and never appear in a message, a log line or an error.

Every network call has a whole-call deadline of ``timeout_seconds``. Python's own socket
timeouts (urllib, http.client, smtplib, and urllib3's ``Timeout(total=...)`` too) bound each
socket operation, so a server that drips a byte per operation holds a call for ever. Here each
channel runs in its own thread, with a budget that every socket operation of the call (connect,
TLS handshake, each send and receive) takes its timeout from: whatever the server does, the
call ends at its deadline, both channels run at once, and no thread or socket outlives ``send``.
The one step no socket timeout reaches is a DNS lookup: ``send`` stops waiting for it at the
deadline, and the thread, left to end on its own, can send nothing after it.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import http.client
import json
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

from dagster import ConfigurableResource, EnvVar, get_dagster_logger
from pydantic import Field

from export_assets.settings import current_settings

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

SIGNATURE_HEADER = "X-Export-Signature"
DEFAULT_WEBSERVER_URL = "http://127.0.0.1:3000"
# A webhook receiver's answer is not used: read a little of it, never an unbounded stream.
MAX_WEBHOOK_ANSWER_BYTES = 64 * 1024
# How long past its deadline `send` waits for a channel's thread to wind up (closing sockets).
DEADLINE_GRACE_SECONDS = 0.5


def sign(body: bytes, key: str) -> str:
    """The signature header's value: ``sha256=`` + hex HMAC-SHA256 of ``body`` under ``key``."""
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Notification:
    """One message: a subject and text for email, the same facts as JSON for the webhook."""

    subject: str
    text: str
    payload: Mapping[str, Any] = field(default_factory=dict)


class _DeadlineExceeded(TimeoutError):
    """A network call ran out of its whole-call time budget."""


class _Deadline:
    """The time budget of one network call, and the step it is at (for the warning)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.step = "starting"
        self.expired = False

    def remaining(self) -> float:
        """Seconds left; raises ``_DeadlineExceeded`` (and remembers it) once none are."""
        left = self.at - time.monotonic()
        if left <= 0:
            self.expired = True
            raise _DeadlineExceeded(f"no time left of the {self.seconds:g} s deadline")
        return left


_T = TypeVar("_T")

# The deadline of the call running in this thread: the sockets read it before every operation
# (the TLS socket that ssl creates for STARTTLS/HTTPS cannot be handed it any other way).
_CALL_DEADLINE: ContextVar[_Deadline | None] = ContextVar("notify_call_deadline", default=None)


def _bounded(sock: socket.socket, operation: Callable[[], _T]) -> _T:
    """Run one socket operation with the time left of this thread's call as its timeout."""
    deadline = _CALL_DEADLINE.get()
    if deadline is None:
        return operation()
    sock.settimeout(deadline.remaining())
    try:
        return operation()
    except TimeoutError:
        deadline.expired = True  # the timeout was the time left: the deadline has passed
        raise


def _step(step: str) -> None:
    deadline = _CALL_DEADLINE.get()
    if deadline is not None:
        deadline.step = step


class _DeadlineSocket(socket.socket):
    """A TCP socket whose every send and receive ends by its call's deadline."""

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        return _bounded(self, lambda: super(_DeadlineSocket, self).recv(bufsize, flags))

    def recv_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0) -> int:
        return _bounded(self, lambda: super(_DeadlineSocket, self).recv_into(buffer, nbytes, flags))

    def send(self, data: ReadableBuffer, flags: int = 0, /) -> int:
        return _bounded(self, lambda: super(_DeadlineSocket, self).send(data, flags))

    def sendall(self, data: ReadableBuffer, flags: int = 0, /) -> None:
        _bounded(self, lambda: super(_DeadlineSocket, self).sendall(data, flags))


class _DeadlineSSLSocket(ssl.SSLSocket):
    """The TLS socket (STARTTLS, HTTPS) with the same bound, handshake included."""

    def do_handshake(self, block: bool = False) -> None:
        _bounded(self, lambda: super(_DeadlineSSLSocket, self).do_handshake(block))

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        return _bounded(self, lambda: super(_DeadlineSSLSocket, self).recv(buflen, flags))

    def recv_into(self, buffer: WriteableBuffer, nbytes: int | None = None, flags: int = 0) -> int:
        return _bounded(
            self, lambda: super(_DeadlineSSLSocket, self).recv_into(buffer, nbytes, flags)
        )

    def send(self, data: ReadableBuffer, flags: int = 0) -> int:
        return _bounded(self, lambda: super(_DeadlineSSLSocket, self).send(data, flags))


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.sslsocket_class = _DeadlineSSLSocket
    return context


def _connect(host: str, port: int) -> _DeadlineSocket:
    """A connected TCP socket to ``host:port``, every address tried within the one deadline."""
    _step(f"connecting to {host}:{port}")
    # getaddrinfo takes no timeout: a DNS lookup that hangs is bounded by `send`, which stops
    # waiting at the deadline; nothing is sent after it (every operation checks the budget).
    addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"{host}:{port} has no address")
    for family, kind, proto, _, address in addresses:
        sock = _DeadlineSocket(family, kind, proto)
        try:
            _bounded(sock, functools.partial(sock.connect, address))
        except OSError as exc:
            sock.close()
            error = exc
            if isinstance(exc, TimeoutError):
                break
            continue
        return sock
    raise error


class _DeadlineSMTP(smtplib.SMTP):
    """smtplib's client on a deadline socket (``_get_socket`` is smtplib's hook for this)."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = _connect(host, port)
        _step("waiting for the server's greeting")
        return sock


class _DeadlineHTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        self.sock = _connect(self.host, self.port)


class _DeadlineHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int | None) -> None:
        self._tls = _tls_context()
        super().__init__(host, port, context=self._tls)

    def connect(self) -> None:
        sock = _connect(self.host, self.port)
        _step("TLS handshake")
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


@dataclass
class _Attempt:
    """One channel's delivery, run in its own thread under its own deadline."""

    channel: str
    target: str
    check: str
    deadline: _Deadline
    deliver: Callable[[], None]
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def run(self) -> None:
        _CALL_DEADLINE.set(self.deadline)  # a new thread starts with an empty context
        try:
            self.deliver()
        except Exception as exc:  # reported by `send`, in the caller's thread
            self.error = exc


class Notifier(ConfigurableResource):  # type: ignore[type-arg]
    """Sends notifications by email (SMTP, optional STARTTLS and login) and signed webhook."""

    smtp_host: str | None = Field(default=None, description="SMTP server; unset: no email.")
    smtp_port: int = Field(default=587, description="SMTP port (587 with STARTTLS, 25 without).")
    smtp_starttls: bool = Field(default=True, description="Upgrade the connection with STARTTLS.")
    smtp_user: str | None = Field(default=None, description="SMTP login (EXPORT_SMTP_USER).")
    smtp_password: str | None = Field(
        default=None, description="SMTP password (EnvVar EXPORT_SMTP_PASSWORD)."
    )
    email_from: str = Field(default="export-assets@localhost", description="Sender address.")
    email_to: list[str] = Field(default_factory=list, description="Recipients of email.")
    webhook_url: str | None = Field(default=None, description="URL the JSON is POSTed to.")
    webhook_secret: str | None = Field(
        default=None,
        description="Key of the HMAC-SHA256 signature header (EnvVar EXPORT_WEBHOOK_SECRET).",
    )
    webserver_url: str = Field(
        default=DEFAULT_WEBSERVER_URL,
        description="Base URL of the Dagster UI, for links to runs (DAGSTER_WEBSERVER_URL).",
    )
    success_digest: bool = Field(
        default=False, description="Also send one digest per successful scheduled run."
    )
    timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Whole-call deadline of each channel's send (connect, TLS, login, send, "
        "answer); the channels are sent at once, so `send` returns within about this time.",
    )

    def run_url(self, run_id: str) -> str:
        """The run's page in the Dagster UI."""
        return f"{self.webserver_url.rstrip('/')}/runs/{run_id}"

    def send(self, notification: Notification, log: Any = None) -> list[str]:
        """Send on every configured channel; the channels that delivered ("email", "webhook").

        The channels run at once, each abandoned at its ``timeout_seconds`` deadline with a
        warning; ``send`` itself never raises for a channel's failure.
        """
        logger = log or get_dagster_logger()
        attempts: list[_Attempt] = []
        if self.smtp_host and self.email_to:
            attempts.append(
                _Attempt(
                    "email",
                    f"to {self.smtp_host}:{self.smtp_port}",
                    "check EXPORT_SMTP_HOST/EXPORT_SMTP_PORT and that the SMTP server answers",
                    _Deadline(self.timeout_seconds),
                    lambda: self._send_email(notification),
                )
            )
        if self.webhook_url:
            attempts.append(
                _Attempt(
                    "webhook",
                    _public_url(self.webhook_url),
                    "check EXPORT_WEBHOOK_URL and that the receiver answers",
                    _Deadline(self.timeout_seconds),
                    lambda: self._post_webhook(notification),
                )
            )
        for attempt in attempts:
            attempt.thread = threading.Thread(
                target=attempt.run, name=f"notify-{attempt.channel}", daemon=True
            )
            attempt.thread.start()
        delivered: list[str] = []
        for attempt in attempts:
            assert attempt.thread is not None
            attempt.thread.join(
                max(0.0, attempt.deadline.at + DEADLINE_GRACE_SECONDS - time.monotonic())
            )
            failure = self._failure(attempt)
            if failure is None:
                delivered.append(attempt.channel)
            else:
                logger.warning(
                    f"notification {attempt.channel} {attempt.target} failed ({failure}); "
                    f"{attempt.check}; the export is not affected"
                )
        return delivered

    def _failure(self, attempt: _Attempt) -> str | None:
        """Why ``attempt`` did not deliver, for the warning; None when it delivered."""
        deadline = attempt.deadline
        if attempt.thread is not None and attempt.thread.is_alive():
            # Only a step no socket timeout reaches (a DNS lookup) can outlive the deadline:
            # the thread is left to end on its own and can send nothing any more.
            return (
                f"still {deadline.step} at its {deadline.seconds:g} s deadline "
                "(timeout_seconds), abandoned; is name resolution slow?"
            )
        if attempt.error is None:
            return None
        if deadline.expired:
            return (
                f"no complete exchange within its {deadline.seconds:g} s deadline "
                f"(timeout_seconds): abandoned while {deadline.step}"
            )
        return f"{type(attempt.error).__name__}: {_safe(attempt.error, self._secrets())}"

    def _secrets(self) -> list[str]:
        return [s for s in (self.smtp_password, self.webhook_secret) if s]

    def _send_email(self, notification: Notification) -> None:
        message = EmailMessage()
        message["Subject"] = notification.subject
        message["From"] = self.email_from
        message["To"] = ", ".join(self.email_to)
        message.set_content(notification.text)
        # Connects and reads the greeting; given the host here, smtplib also keeps it as the
        # name STARTTLS verifies the certificate against.
        smtp = _DeadlineSMTP(self.smtp_host or "", self.smtp_port, timeout=self.timeout_seconds)
        try:
            _step("waiting for the answer to EHLO")
            smtp.ehlo()
            if self.smtp_starttls:
                _step("STARTTLS")
                smtp.starttls(context=_tls_context())
                _step("waiting for the answer to EHLO after STARTTLS")
                smtp.ehlo()
            if self.smtp_user:
                _step("logging in")
                smtp.login(self.smtp_user, self.smtp_password or "")
            _step("sending the message")
            smtp.send_message(message)
            _step("closing the session")
            # The server has accepted the message: a lost QUIT changes nothing.
            with contextlib.suppress(OSError, smtplib.SMTPException):
                smtp.quit()
        finally:
            smtp.close()

    def _post_webhook(self, notification: Notification) -> None:
        url = urlsplit(self.webhook_url or "")
        if url.scheme not in {"http", "https"} or not url.hostname:
            raise ValueError("the webhook URL must start with http:// or https:// and name a host")
        body = json.dumps(
            {"subject": notification.subject, "text": notification.text, **notification.payload},
            sort_keys=True,
        ).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "export-assets"}
        if self.webhook_secret:
            headers[SIGNATURE_HEADER] = sign(body, self.webhook_secret)
        if url.username is not None:  # https://user:token@host/...: HTTP basic authentication
            login = f"{unquote(url.username)}:{unquote(url.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(login.encode()).decode()
        connection: http.client.HTTPConnection = (
            _DeadlineHTTPSConnection(url.hostname, url.port)
            if url.scheme == "https"
            else _DeadlineHTTPConnection(url.hostname, url.port)
        )
        try:
            connection.request(
                "POST", (url.path or "/") + (f"?{url.query}" if url.query else ""), body, headers
            )
            _step("waiting for the answer")
            response = connection.getresponse()
            _step("reading the answer")
            try:
                response.read(MAX_WEBHOOK_ANSWER_BYTES)
            finally:
                response.close()
        finally:
            connection.close()
        if not 200 <= response.status < 300:
            raise http.client.HTTPException(
                f"the receiver answered HTTP {response.status} {response.reason}"
            )


def failure_notification(
    notifier: Notifier,
    *,
    run_id: str,
    job: str,
    partition: str | None,
    failures: Sequence[tuple[str, str]],
    requested_by: str,
) -> Notification:
    """The message for a failed run: run, job, partition, each failed asset and its error."""
    link = notifier.run_url(run_id)
    assets = [asset for asset, _ in failures if asset]
    first_error = next((error for _, error in failures if error), "see the run in the Dagster UI")
    subject = f"[export failed] {job} {partition or ''}".rstrip() + (
        f": {', '.join(assets)}" if assets else ""
    )
    lines = [
        f"Run {run_id} of {job} failed.",
        f"Partition: {partition or '(none)'}",
        f"Requested by: {requested_by}",
    ]
    lines += [f"Asset {asset or '(run)'}: {error}" for asset, error in failures] or [
        f"Error: {first_error}"
    ]
    lines.append(f"Run in the Dagster UI: {link}")
    payload = {
        "event": "export_failed",
        "run_id": run_id,
        "job": job,
        "partition": partition,
        "assets": assets,
        "error": first_error,
        "failures": [{"asset": a, "error": e} for a, e in failures],
        "requested_by": requested_by,
        "run_url": link,
    }
    return Notification(subject, "\n".join(lines) + "\n", payload)


def digest_notification(
    notifier: Notifier,
    *,
    run_id: str,
    job: str,
    partition: str | None,
    exported: Sequence[Mapping[str, Any]],
    requested_by: str,
) -> Notification:
    """One message for a successful scheduled run: every asset it exported, rows and bytes."""
    link = notifier.run_url(run_id)
    lines = [f"Run {run_id} of {job} exported {len(exported)} assets for {partition}."]
    lines += [
        f"{e['asset']}: {e.get('rows') or 0:,} rows, {e.get('bytes') or 0:,} bytes, {e.get('uri')}"
        for e in exported
    ]
    lines.append(f"Run in the Dagster UI: {link}")
    payload = {
        "event": "export_succeeded",
        "run_id": run_id,
        "job": job,
        "partition": partition,
        "exported": list(exported),
        "requested_by": requested_by,
        "run_url": link,
    }
    subject = f"[export ok] {job} {partition or ''}: {len(exported)} assets"
    return Notification(subject, "\n".join(lines) + "\n", payload)


def _safe(error: BaseException, secrets: Sequence[str]) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _public_url(url: str) -> str:
    """``url`` fit for a log line: no ``user:password@``, query or fragment (they may be keys)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return "(not a URL)"
    hidden = "?..." if parts.query or parts.fragment else ""
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}{hidden}"


def notifier_from_environment() -> Notifier:
    """The notifier of the code location: channels set by ``EXPORT_SMTP_*``/``EXPORT_WEBHOOK_*``.

    Secrets stay ``EnvVar``s (resolved when a run or sensor starts, never shown in the UI).
    """
    # Read when the code location loads: which channels exist is part of the resource.
    env = current_settings()

    def var(name: str) -> Any:
        return EnvVar(name) if env.is_set(name) else None

    settings: dict[str, Any] = {
        "smtp_host": var("EXPORT_SMTP_HOST"),
        "smtp_user": var("EXPORT_SMTP_USER"),
        "smtp_password": var("EXPORT_SMTP_PASSWORD"),
        "webhook_url": var("EXPORT_WEBHOOK_URL"),
        "webhook_secret": var("EXPORT_WEBHOOK_SECRET"),
        "email_to": list(env.email_to),
        "success_digest": env.success_digest,
        "smtp_starttls": env.smtp_starttls,
    }
    if env.smtp_port is not None:
        settings["smtp_port"] = EnvVar.int("EXPORT_SMTP_PORT")
    if env.email_from is not None:
        settings["email_from"] = EnvVar("EXPORT_EMAIL_FROM")
    if env.webserver_url is not None:
        settings["webserver_url"] = EnvVar("DAGSTER_WEBSERVER_URL")
    return Notifier(**{k: v for k, v in settings.items() if v is not None})
