"""What a block marked `s3` or `smtp` runs against: real servers on 127.0.0.1."""

from __future__ import annotations

import smtplib

import boto3
import pytest

from docs_tests.services import DEFAULT_BUCKET, service_env

pytestmark = pytest.mark.docs


def test_s3_and_smtp_markers_give_servers_and_the_variables_the_docs_name() -> None:
    command = "EXPORT_DESTINATION=s3://nightly-exports/pool .venv/bin/export-assets retention"
    with service_env(frozenset({"s3", "smtp"}), command) as env:
        assert env["EXPORT_DESTINATION"] == f"s3://{DEFAULT_BUCKET}/exports"
        assert env["AWS_ENDPOINT_URL_S3"].startswith("http://127.0.0.1:")
        client = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL_S3"],
            region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        buckets = {b["Name"] for b in client.list_buckets()["Buckets"]}
        assert buckets == {DEFAULT_BUCKET, "nightly-exports"}  # the command's own bucket too
        with smtplib.SMTP(env["EXPORT_SMTP_HOST"], int(env["EXPORT_SMTP_PORT"]), timeout=5) as smtp:
            message = "Subject: docs-test\n\nhello"
            refused = smtp.sendmail(env["EXPORT_EMAIL_FROM"], [env["EXPORT_EMAIL_TO"]], message)
        assert refused == {}


def test_no_marker_no_services() -> None:
    with service_env(frozenset(), "make run") as env:
        assert env == {}
