"""The external things a marked block may need, on 127.0.0.1: S3 (moto) and SMTP (aiosmtpd)."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from export_assets_tests import s3_server

DEFAULT_BUCKET = "docs-test"
_BUCKET = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])")


@contextmanager
def service_env(services: frozenset[str], command: str) -> Iterator[dict[str, str]]:
    """Start what ``services`` names for one command; the variables the docs name for them."""
    env: dict[str, str] = {}
    with ExitStack() as stack:
        if "s3" in services:
            server = stack.enter_context(s3_server.running_moto_server())
            client = server.client()
            for bucket in {DEFAULT_BUCKET, *_BUCKET.findall(command)}:
                client.create_bucket(Bucket=bucket)
            env.update(
                EXPORT_DESTINATION=f"s3://{DEFAULT_BUCKET}/exports",
                AWS_ACCESS_KEY_ID=s3_server.ACCESS_KEY_ID,
                AWS_SECRET_ACCESS_KEY=s3_server.SECRET_ACCESS_KEY,
                AWS_DEFAULT_REGION=s3_server.REGION,
                AWS_ENDPOINT_URL_S3=server.endpoint_url,
                AWS_EC2_METADATA_DISABLED="true",
            )
        if "smtp" in services:
            from aiosmtpd.controller import Controller
            from aiosmtpd.handlers import Sink

            port = _free_port()
            controller = Controller(Sink(), hostname="127.0.0.1", port=port)
            controller.start()
            stack.callback(controller.stop)
            env.update(
                EXPORT_SMTP_HOST="127.0.0.1",
                EXPORT_SMTP_PORT=str(port),
                EXPORT_SMTP_STARTTLS="false",
                EXPORT_EMAIL_FROM="exports@example.test",
                EXPORT_EMAIL_TO="ops@example.test",
            )
        yield env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
