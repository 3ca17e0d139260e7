"""Notifications: email over SMTP and a signed JSON webhook, as one Dagster resource.

A channel that is not configured is skipped; a channel that cannot reach its server logs a
warning and never fails what called it. Secrets (the SMTP password, the webhook key) come
from ``EnvVar``s and never appear in a message, a log line or an error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from dagster import ConfigurableResource, EnvVar, get_dagster_logger
from pydantic import Field

SIGNATURE_HEADER = "X-Export-Signature"
DEFAULT_WEBSERVER_URL = "http://127.0.0.1:3000"


def sign(body: bytes, key: str) -> str:
    """The signature header's value: ``sha256=`` + hex HMAC-SHA256 of ``body`` under ``key``."""
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Notification:
    """One message: a subject and text for email, the same facts as JSON for the webhook."""

    subject: str
    text: str
    payload: Mapping[str, Any] = field(default_factory=dict)


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
    timeout_seconds: float = Field(default=10.0, description="Network timeout of each send.")

    def run_url(self, run_id: str) -> str:
        """The run's page in the Dagster UI."""
        return f"{self.webserver_url.rstrip('/')}/runs/{run_id}"

    def send(self, notification: Notification, log: Any = None) -> list[str]:
        """Send on every configured channel; the channels that delivered ("email", "webhook")."""
        logger = log or get_dagster_logger()
        delivered: list[str] = []
        if self.smtp_host and self.email_to:
            try:
                self._send_email(notification)
                delivered.append("email")
            except (OSError, smtplib.SMTPException) as exc:
                logger.warning(
                    f"notification email to {self.smtp_host}:{self.smtp_port} failed "
                    f"({type(exc).__name__}: {_safe(exc, self._secrets())}); the export is "
                    "not affected"
                )
        if self.webhook_url:
            try:
                self._post_webhook(notification)
                delivered.append("webhook")
            except (OSError, ValueError) as exc:
                logger.warning(
                    f"notification webhook {_without_userinfo(self.webhook_url)} failed "
                    f"({type(exc).__name__}: {_safe(exc, self._secrets())}); the export is "
                    "not affected"
                )
        return delivered

    def _secrets(self) -> list[str]:
        return [s for s in (self.smtp_password, self.webhook_secret) if s]

    def _send_email(self, notification: Notification) -> None:
        message = EmailMessage()
        message["Subject"] = notification.subject
        message["From"] = self.email_from
        message["To"] = ", ".join(self.email_to)
        message.set_content(notification.text)
        host = self.smtp_host or ""
        with smtplib.SMTP(host, self.smtp_port, timeout=self.timeout_seconds) as smtp:
            if self.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.smtp_user:
                smtp.login(self.smtp_user, self.smtp_password or "")
            smtp.send_message(message)

    def _post_webhook(self, notification: Notification) -> None:
        url = self.webhook_url or ""
        if not url.startswith(("http://", "https://")):
            raise ValueError("the webhook URL must start with http:// or https://")
        body = json.dumps(
            {"subject": notification.subject, "text": notification.text, **notification.payload},
            sort_keys=True,
        ).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "export-assets"}
        if self.webhook_secret:
            headers[SIGNATURE_HEADER] = sign(body, self.webhook_secret)
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310
        with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:  # noqa: S310
            response.read()


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
        "event": "export_succeeded", "run_id": run_id, "job": job, "partition": partition,
        "exported": list(exported), "requested_by": requested_by, "run_url": link,
    }  # fmt: skip
    subject = f"[export ok] {job} {partition or ''}: {len(exported)} assets"
    return Notification(subject, "\n".join(lines) + "\n", payload)


def _safe(error: BaseException, secrets: Sequence[str]) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _without_userinfo(url: str) -> str:
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.rpartition('@')[2]}{slash}{path}"



def notifier_from_environment() -> Notifier:
    """The notifier of the code location: channels set by ``EXPORT_SMTP_*``/``EXPORT_WEBHOOK_*``.

    Secrets stay ``EnvVar``s (resolved when a run or sensor starts, never shown in the UI).
    """
    env = os.environ

    def var(name: str) -> Any:
        return EnvVar(name) if env.get(name) else None

    settings: dict[str, Any] = {
        "smtp_host": var("EXPORT_SMTP_HOST"),
        "smtp_user": var("EXPORT_SMTP_USER"),
        "smtp_password": var("EXPORT_SMTP_PASSWORD"),
        "webhook_url": var("EXPORT_WEBHOOK_URL"),
        "webhook_secret": var("EXPORT_WEBHOOK_SECRET"),
        "email_to": [a.strip() for a in env.get("EXPORT_EMAIL_TO", "").split(",") if a.strip()],
        "success_digest": env.get("EXPORT_SUCCESS_DIGEST", "").strip().lower()
        in {"1", "true", "yes"},
    }
    if env.get("EXPORT_SMTP_PORT"):
        settings["smtp_port"] = EnvVar.int("EXPORT_SMTP_PORT")
    if env.get("EXPORT_SMTP_STARTTLS"):
        settings["smtp_starttls"] = env["EXPORT_SMTP_STARTTLS"].strip().lower() not in {
            "0", "false", "no",
        }  # fmt: skip
    if env.get("EXPORT_EMAIL_FROM"):
        settings["email_from"] = EnvVar("EXPORT_EMAIL_FROM")
    if env.get("DAGSTER_WEBSERVER_URL"):
        settings["webserver_url"] = EnvVar("DAGSTER_WEBSERVER_URL")
    return Notifier(**{k: v for k, v in settings.items() if v is not None})
