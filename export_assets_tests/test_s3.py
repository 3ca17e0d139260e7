"""S3Destination against a real S3 endpoint: moto's server process on 127.0.0.1.

Clients are built by ``dagster_aws.s3.S3Resource.get_client()``, as in production; the
server is checked independently through plain boto3 calls and urllib.
"""

from __future__ import annotations

import random
import re
import signal
import socket
import subprocess
import sys
import traceback
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.exceptions import ClientError

from export_assets.lib.exports import s3_objects
from export_assets.lib.exports.destinations import DestinationError
from export_assets.lib.exports.s3 import (
    MAX_LINK_SECONDS,
    MIB,
    MIN_PART_SIZE,
    S3Destination,
    parse_s3_location,
)
from export_assets_tests import s3_server
from export_assets_tests.s3_server import MotoServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PREFIX = "proxywhirl/daily"
DATA_KEY = "proxy_list/dt=2026-11-20/proxy_list-2026-11-20.csv.gz"
MANIFEST_KEY = "proxy_list/dt=2026-11-20/_manifest.json"


@pytest.fixture
def client(moto_server: MotoServer) -> S3Client:
    return moto_server.client()


@pytest.fixture
def bucket(client: S3Client) -> str:
    name = f"exports-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def destination(client: S3Client, bucket: str) -> S3Destination:
    return S3Destination(client, bucket, PREFIX, part_size=MIN_PART_SIZE)


def object_keys(client: S3Client, bucket: str) -> list[str]:
    """Every key in the bucket, read independently of S3Destination."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def pending_uploads(client: S3Client, bucket: str) -> list[str]:
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return [upload["Key"] for upload in uploads]


def object_bytes(client: S3Client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def is_visible(client: S3Client, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "404":
            return False
        raise
    return True


def payload(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def test_write_read_list_delete_round_trip(
    client: S3Client, bucket: str, destination: S3Destination
) -> None:
    data, manifest = payload(1000), b'{"asset": "proxy_list"}'
    destination.write_bytes(DATA_KEY, data)
    destination.write_bytes(MANIFEST_KEY, manifest)
    destination.write_bytes("proxy_list/dt=2026-11-19/_manifest.json", b"{}")
    destination.write_bytes("proxy_list_old/dt=2026-01-01/_manifest.json", b"{}")

    assert object_keys(client, bucket) == [
        f"{PREFIX}/proxy_list/dt=2026-11-19/_manifest.json",
        f"{PREFIX}/{MANIFEST_KEY}",
        f"{PREFIX}/{DATA_KEY}",
        f"{PREFIX}/proxy_list_old/dt=2026-01-01/_manifest.json",
    ]
    assert object_bytes(client, bucket, f"{PREFIX}/{DATA_KEY}") == data
    assert destination.read_bytes(DATA_KEY) == data
    with destination.open_read(MANIFEST_KEY) as stream:
        assert stream.read() == manifest
    assert destination.list_folders("proxy_list") == ["dt=2026-11-19", "dt=2026-11-20"]
    assert destination.list_folders("") == ["proxy_list", "proxy_list_old"]
    assert destination.list_folders("no_such_asset") == []
    assert destination.uri(DATA_KEY) == f"s3://{bucket}/{PREFIX}/{DATA_KEY}"
    head = client.head_object(Bucket=bucket, Key=f"{PREFIX}/{MANIFEST_KEY}")
    assert head["ContentType"] == "application/json"

    destination.delete(DATA_KEY)
    destination.delete(DATA_KEY)  # deleting what is gone is not an error
    assert destination.read_bytes(DATA_KEY) is None
    missing = re.escape(f"s3://{bucket}/{PREFIX}/{DATA_KEY}")
    with pytest.raises(FileNotFoundError, match=missing), destination.open_read(DATA_KEY):
        pass
    assert f"{PREFIX}/{DATA_KEY}" not in object_keys(client, bucket)


@pytest.mark.parametrize(
    ("prefix", "stored_under"),
    [("", ""), ("daily", "daily/"), ("/nested//daily/", "nested/daily/")],
)
def test_key_layout(client: S3Client, bucket: str, prefix: str, stored_under: str) -> None:
    destination = S3Destination(client, bucket, prefix)
    destination.write_bytes("validation_events/dt=2026-11-20/_manifest.json", b"{}")

    assert object_keys(client, bucket) == [
        f"{stored_under}validation_events/dt=2026-11-20/_manifest.json"
    ]
    assert destination.uri("validation_events/x.csv") == (
        f"s3://{bucket}/{stored_under}validation_events/x.csv"
    )
    assert destination.list_folders("") == ["validation_events"]
    assert destination.list_folders("validation_events/") == ["dt=2026-11-20"]


def test_list_folders_reads_every_page(client: S3Client, bucket: str) -> None:
    destination = S3Destination(client, bucket, PREFIX, list_page_size=3)
    days = [f"dt=2026-11-{day:02d}" for day in range(1, 12)]
    for day in days:
        destination.write_bytes(f"proxy_metrics/{day}/_manifest.json", b"{}")
    destination.write_bytes("proxy_metrics/README.txt", b"a file, not a folder")
    destination.write_bytes("proxy_metrics/dt=2026-11-01/nested/deeper.txt", b"")
    pages: list[int] = []
    client.meta.events.register(
        "after-call.s3.ListObjectsV2", lambda **kwargs: pages.append(len(pages))
    )

    assert destination.list_folders("proxy_metrics") == days
    assert len(pages) >= 4  # 11 folders and a file, 3 a page


@pytest.mark.parametrize("checksums", ["when_supported", "when_required"])
def test_large_file_is_streamed_in_parts_and_visible_only_when_complete(
    moto_server: MotoServer, bucket: str, monkeypatch: pytest.MonkeyPatch, checksums: str
) -> None:
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", checksums)
    client = moto_server.client()
    destination = S3Destination(client, bucket, PREFIX, part_size=MIN_PART_SIZE)
    data = payload(2 * MIN_PART_SIZE + 123_457)
    stored = f"{PREFIX}/{DATA_KEY}"

    with destination.open_write(DATA_KEY) as stream:
        for start in range(0, len(data), 700_001):  # writes that do not align with parts
            stream.write(data[start : start + 700_001])
        assert not is_visible(client, bucket, stored)
        [upload] = client.list_multipart_uploads(Bucket=bucket)["Uploads"]
        parts = client.list_parts(Bucket=bucket, Key=stored, UploadId=upload["UploadId"])
        assert [part["Size"] for part in parts["Parts"]] == [MIN_PART_SIZE, MIN_PART_SIZE]

    assert object_bytes(client, bucket, stored) == data
    assert client.head_object(Bucket=bucket, Key=stored)["ETag"].endswith('-3"')
    assert pending_uploads(client, bucket) == []
    with destination.open_read(DATA_KEY) as reader:
        assert reader.read() == data


@pytest.mark.parametrize("size", [3 * MIB, 2 * MIN_PART_SIZE + 1])
@pytest.mark.parametrize("had_previous", [True, False])
def test_failure_mid_write_publishes_nothing_and_keeps_previous_version(
    client: S3Client, bucket: str, destination: S3Destination, size: int, had_previous: bool
) -> None:
    previous = payload(5000, seed=1)
    if had_previous:
        destination.write_bytes(DATA_KEY, previous)
    before = object_keys(client, bucket)

    pending_during_write: list[list[str]] = []

    def failing_write() -> None:
        with destination.open_write(DATA_KEY) as stream:
            stream.write(payload(size))
            pending_during_write.append(pending_uploads(client, bucket))
            raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError, match="writer failed"):
        failing_write()

    multipart = size > MIN_PART_SIZE
    assert pending_during_write == [[f"{PREFIX}/{DATA_KEY}"] if multipart else []]
    assert pending_uploads(client, bucket) == []
    assert object_keys(client, bucket) == before
    assert destination.read_bytes(DATA_KEY) == (previous if had_previous else None)


def test_abort_incomplete_uploads_removes_uploads_of_killed_runs(
    client: S3Client, bucket: str, destination: S3Destination
) -> None:
    ours = f"{PREFIX}/{DATA_KEY}"
    client.create_multipart_upload(Bucket=bucket, Key=ours)  # as a killed run leaves it
    client.create_multipart_upload(Bucket=bucket, Key="someone-else/file.bin")

    assert destination.abort_incomplete_uploads(older_than=timedelta(0)) == [ours]
    assert pending_uploads(client, bucket) == ["someone-else/file.bin"]


def test_open_read_streams_and_seeks(
    client: S3Client, bucket: str, destination: S3Destination
) -> None:
    data = payload(3 * MIB)
    destination.write_bytes(DATA_KEY, data)

    with destination.open_read(DATA_KEY) as stream:
        assert stream.read(10) == data[:10]
        stream.seek(-100, 2)  # as Parquet readers do to find the footer
        assert stream.read() == data[-100:]
        stream.seek(MIB)
        assert stream.read(MIB) == data[MIB : 2 * MIB]


def test_a_file_replaced_during_a_read_is_not_mixed(destination: S3Destination) -> None:
    destination.write_bytes(DATA_KEY, payload(2 * MIB, seed=1))

    with destination.open_read(DATA_KEY) as stream:
        stream.read(10)
        destination.write_bytes(DATA_KEY, payload(2 * MIB, seed=2))
        stream.seek(MIB + 100)  # past what the first response buffered: a new ranged GET
        with pytest.raises(DestinationError, match="replaced or deleted while it was being read"):
            stream.read(10)


def test_missing_bucket_is_a_clear_error_and_creates_nothing(client: S3Client) -> None:
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    destination = S3Destination(client, missing, PREFIX, part_size=MIN_PART_SIZE)
    expected = f"bucket {missing} does not exist .*: create it or fix EXPORT_DESTINATION"

    with pytest.raises(DestinationError, match=expected):
        destination.write_bytes(MANIFEST_KEY, b"{}")  # single PUT
    with pytest.raises(DestinationError, match=expected):
        destination.write_bytes(DATA_KEY, payload(MIN_PART_SIZE + 1))  # multipart
    with pytest.raises(DestinationError, match=expected):
        destination.read_bytes(MANIFEST_KEY)
    with pytest.raises(DestinationError, match=expected):
        destination.list_folders("proxy_list")
    assert missing not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]


@pytest.mark.parametrize("refusal", ["unknown key", "wrong secret", "no permission"])
def test_refused_credentials_are_named_but_never_shown(
    moto_server: MotoServer, client: S3Client, bucket: str, refusal: str
) -> None:
    iam = boto3.client(
        "iam",
        endpoint_url=moto_server.endpoint_url,
        region_name=s3_server.REGION,
        aws_access_key_id=s3_server.ACCESS_KEY_ID,
        aws_secret_access_key=s3_server.SECRET_ACCESS_KEY,
    )
    user = f"exporter-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    key_id, secret = {
        "unknown key": ("AKIAUNKNOWNUNKNOWN42", "unknown-secret-value-0123456789"),
        "wrong secret": (key["AccessKeyId"], "wrong-secret-value-0123456789"),
        "no permission": (key["AccessKeyId"], key["SecretAccessKey"]),
    }[refusal]
    expected = {
        "unknown key": "S3 rejected the credentials \\(InvalidAccessKeyId\\)",
        "wrong secret": "S3 rejected the credentials \\(SignatureDoesNotMatch\\)",
        "no permission": "access denied while writing .* need s3:PutObject",
    }[refusal]
    refused = S3Destination(
        moto_server.client(aws_access_key_id=key_id, aws_secret_access_key=secret),
        bucket,
        PREFIX,
    )

    with (
        moto_server.iam_authentication(),
        pytest.raises(DestinationError, match=expected) as caught,
    ):
        refused.write_bytes(MANIFEST_KEY, b"{}")

    assert "AWS_ACCESS_KEY_ID" in str(caught.value)
    assert "AWS_SECRET_ACCESS_KEY" in str(caught.value)
    shown = "".join(traceback.format_exception(caught.value))
    for value in (key_id, secret, key["SecretAccessKey"]):
        assert value not in shown
    assert object_keys(client, bucket) == []


def test_permitted_credentials_write_under_iam_authentication(
    moto_server: MotoServer, client: S3Client, bucket: str
) -> None:
    """The control for the test above: the same server accepts a user with permission."""
    iam = boto3.client(
        "iam",
        endpoint_url=moto_server.endpoint_url,
        region_name=s3_server.REGION,
        aws_access_key_id=s3_server.ACCESS_KEY_ID,
        aws_secret_access_key=s3_server.SECRET_ACCESS_KEY,
    )
    user = f"exporter-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(
        UserName=user,
        PolicyName="exports",
        PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
        '"Action": "s3:*", "Resource": "*"}]}',
    )
    key = iam.create_access_key(UserName=user)["AccessKey"]
    permitted = S3Destination(
        moto_server.client(
            aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"]
        ),
        bucket,
        PREFIX,
    )

    with moto_server.iam_authentication():
        permitted.write_bytes(MANIFEST_KEY, b"{}")

    assert object_keys(client, bucket) == [f"{PREFIX}/{MANIFEST_KEY}"]


def test_unreachable_endpoint_is_a_clear_error(moto_server: MotoServer) -> None:
    closed = f"http://127.0.0.1:{s3_server.free_port()}"
    destination = S3Destination(
        moto_server.client(endpoint_url=closed, max_attempts=1), "exports", PREFIX
    )

    with pytest.raises(DestinationError) as caught:
        destination.write_bytes(MANIFEST_KEY, b"{}")

    assert str(caught.value) == (
        f"cannot reach S3 endpoint {closed} while writing s3://exports/{PREFIX}/{MANIFEST_KEY}: "
        "is it running / is endpoint_url right?"
    )
    assert s3_server.SECRET_ACCESS_KEY not in "".join(traceback.format_exception(caught.value))


@pytest.mark.parametrize("code", ["InternalError", "ServiceUnavailable", "SlowDown", "503"])
def test_transient_errors_stay_botocore_errors(destination: S3Destination, code: str) -> None:
    """Dagster's retry policy needs to see them as they are."""
    error = ClientError({"Error": {"Code": code, "Message": "try again"}}, "UploadPart")

    assert destination._permanent_error(error, s3_objects.WRITING, "key") is None


def test_presigned_url_downloads_without_credentials(
    moto_server: MotoServer, destination: S3Destination
) -> None:
    data = payload(4096)
    destination.write_bytes(DATA_KEY, data)

    url = destination.presigned_url(DATA_KEY, expires_in=3600)

    assert url.startswith(f"{moto_server.endpoint_url}/")
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url  # SigV4, not botocore's SigV2 default
    assert s3_server.SECRET_ACCESS_KEY not in url
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (127.0.0.1)
        assert response.read() == data


@pytest.mark.parametrize("expires_in", [0, -1, MAX_LINK_SECONDS + 1])
def test_presigned_url_expiry_is_validated(destination: S3Destination, expires_in: int) -> None:
    with pytest.raises(ValueError, match="must expire in 1 second to 7 days"):
        destination.presigned_url(DATA_KEY, expires_in)


def test_presigned_url_accepts_the_limits(destination: S3Destination) -> None:
    shortest = destination.presigned_url(DATA_KEY, 1)
    longest = destination.presigned_url(DATA_KEY, MAX_LINK_SECONDS)

    assert "X-Amz-Expires=1&" in shortest
    assert f"X-Amz-Expires={MAX_LINK_SECONDS}&" in longest


@pytest.mark.parametrize(
    ("location", "parsed"),
    [
        ("s3://exports", ("exports", "")),
        ("s3://exports/", ("exports", "")),
        ("s3://exports/proxywhirl/daily", ("exports", "proxywhirl/daily")),
        ("s3://exports//proxywhirl//daily/", ("exports", "proxywhirl/daily")),
    ],
)
def test_parse_s3_location(location: str, parsed: tuple[str, str]) -> None:
    assert parse_s3_location(location) == parsed


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("s3://", "names no bucket: use s3://bucket/prefix"),
        ("s3:///prefix", "names no bucket: use s3://bucket/prefix"),
        ("s3://bad bucket/x", "'bad bucket' is not a valid S3 bucket name"),
        ("./exports", "is not an S3 location: use s3://bucket/prefix"),
    ],
)
def test_parse_s3_location_rejects(location: str, message: str) -> None:
    with pytest.raises(DestinationError, match=message):
        parse_s3_location(location)


def test_part_size_must_be_one_s3_accepts(client: S3Client) -> None:
    with pytest.raises(ValueError, match="must be between 5,242,880 \\(5 MiB\\)"):
        S3Destination(client, "exports", part_size=MIB)


def test_server_helper_stops_the_server_when_the_block_fails() -> None:
    servers: list[MotoServer] = []

    def failing_session() -> None:
        with s3_server.running_moto_server() as server:
            servers.append(server)
            raise RuntimeError("a test failed")

    with pytest.raises(RuntimeError, match="a test failed"):
        failing_session()

    [server] = servers
    assert server.process.returncode is not None
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection((s3_server.HOST, server.port)),
    ):
        pass


def test_server_helper_kills_a_server_that_ignores_terminate(tmp_path: Path) -> None:
    ignore_terminate = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    stubborn = subprocess.Popen([sys.executable, "-c", ignore_terminate], stdout=subprocess.PIPE)
    try:
        assert stubborn.stdout is not None
        assert stubborn.stdout.readline() == b"ready\n"  # SIGTERM is ignored from now on

        s3_server.stop_moto_server(MotoServer(stubborn, 0, tmp_path / "log"), timeout=0.5)

        assert stubborn.returncode == -signal.SIGKILL
    finally:
        if stubborn.poll() is None:
            stubborn.kill()
            stubborn.wait()
        if stubborn.stdout is not None:
            stubborn.stdout.close()
