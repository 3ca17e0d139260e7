"""Exports on S3 or an S3-compatible store: multipart uploads that appear only when complete.

The client comes from ``dagster_aws.s3.S3Resource(...).get_client()``, which carries the
region, credentials, endpoint URL and retry configuration. Transient failures (5xx,
throttling, dropped connections) propagate as botocore raises them, so Dagster's retry
policy can run the step again; only permanent ones (missing bucket, refused credentials,
unreachable endpoint) become a ``DestinationError`` that says what to fix.
"""

from __future__ import annotations

import errno
import io
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO, cast
from urllib.parse import urlsplit

from export_assets.lib.exports.destinations import (
    TEMPORARY_NAME,
    Destination,
    DestinationError,
    UnsafePathError,
    key_parts,
)
from export_assets.lib.exports.s3_objects import (
    MAX_PARTS,
    MISSING_KEY_CODES,
    ABORTING,
    DELETING,
    LISTING,
    READING,
    WRITING,
    Action,
    MultipartUpload,
    ObjectReader,
    client_error,
    content_type,
    error_code,
)

if TYPE_CHECKING:
    from botocore.exceptions import ClientError
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import (
        PutObjectRequestTypeDef,
    )

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * 1024 * MIB
DEFAULT_PART_SIZE = 8 * MIB
MAX_LIST_PAGE_SIZE = 1000
READ_BUFFER_SIZE = 1 * MIB
MAX_LINK_SECONDS = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live
_PRESIGN_SIGV4_ID = "export_assets.s3.presign-with-sigv4"

S3_SCHEME = "s3://"
# What botocore accepts as a bucket name (legacy names included); S3 itself is stricter.
_BUCKET_NAME = re.compile(r"[a-zA-Z0-9.\-_]{1,255}")
# A conditional write or delete whose condition did not hold (412), or lost a race to
# another conditional request on the same key (409).
_CONDITION_FAILED_CODES = frozenset(
    {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
)
# A store without conditional deletes (If-Match on DeleteObject).
_UNSUPPORTED_CODES = frozenset({"NotImplemented", "501"})
_REFUSED_CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
)
_CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary "
    "credentials), AWS_PROFILE, or the S3 resource's aws_access_key_id / aws_secret_access_key"
)


def parse_s3_location(location: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``; the prefix may be empty."""
    if not location.startswith(S3_SCHEME):
        raise DestinationError(
            f"EXPORT_DESTINATION={location!r} is not an S3 location: use s3://bucket/prefix"
        )
    bucket, _, prefix = location.removeprefix(S3_SCHEME).partition("/")
    if not bucket:
        raise DestinationError(
            f"EXPORT_DESTINATION={location!r} names no bucket: use s3://bucket/prefix, "
            "e.g. s3://proxywhirl-exports/daily"
        )
    if not _BUCKET_NAME.fullmatch(bucket):
        raise DestinationError(
            f"EXPORT_DESTINATION={location!r}: {bucket!r} is not a valid S3 bucket name "
            "(letters, digits, '.', '-' and '_' only): use s3://bucket/prefix"
        )
    parts = [part for part in prefix.split("/") if part]
    if parts:
        try:
            key_parts("/".join(parts))
        except UnsafePathError as exc:
            raise DestinationError(
                f"EXPORT_DESTINATION={location!r}: the prefix is refused ({exc})"
            ) from None
    return bucket, _join_key(*parts)


def _join_key(*parts: str) -> str:
    """Parts joined by single slashes; empty parts (and stray slashes) dropped."""
    return "/".join(segment for part in parts for segment in part.split("/") if segment)


class S3Destination(Destination):
    """Objects under ``s3://{bucket}/{prefix}/``; a write is published by completing its upload."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str = "",
        *,
        part_size: int = DEFAULT_PART_SIZE,
        list_page_size: int = MAX_LIST_PAGE_SIZE,
    ) -> None:
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(
                f"part_size={part_size:,} bytes: S3 multipart parts must be between "
                f"{MIN_PART_SIZE:,} (5 MiB) and {MAX_PART_SIZE:,} (5 GiB) bytes"
            )
        if not 1 <= list_page_size <= MAX_LIST_PAGE_SIZE:
            raise ValueError(
                f"list_page_size={list_page_size}: S3 lists 1 to {MAX_LIST_PAGE_SIZE} keys a page"
            )
        self.client = client
        self.bucket = bucket
        self.prefix = _join_key(prefix)
        self.part_size = part_size
        self.list_page_size = list_page_size

    def object_key(self, key: str) -> str:
        """The S3 object key that holds ``key``: ``{prefix}/{key}``.

        ``key`` must be plain '/'-separated names (no '..', '.', empty part, backslash or
        NUL): S3 keys are not paths, but proxies, MinIO gateways and tools that mirror a
        bucket to disk may treat them as such.
        """
        if not key.strip("/"):
            raise ValueError(f"{key!r} is not a key: name a file under the destination")
        return _join_key(self.prefix, *key_parts(key))

    def uri(self, key: str) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.object_key(key)}"

    @contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        upload = MultipartUpload(self, self.object_key(key))
        try:
            yield cast(BinaryIO, upload)
            upload.complete()
        except BaseException as exc:
            upload.abort(exc)
            raise
        finally:
            upload.close()

    def read_bytes(self, key: str) -> bytes | None:
        versioned = self.read_versioned(key)
        return None if versioned is None else versioned[0]

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        object_key = self.object_key(key)
        try:
            with self._s3_errors(READING, object_key):
                response = self.client.get_object(Bucket=self.bucket, Key=object_key)
        except client_error() as exc:
            if error_code(exc) in MISSING_KEY_CODES:
                raise FileNotFoundError(
                    errno.ENOENT, "no such export file", self._uri_of(object_key)
                ) from None
            raise
        raw = ObjectReader(
            self, object_key, response["Body"], response["ContentLength"], response["ETag"]
        )
        with io.BufferedReader(raw, buffer_size=READ_BUFFER_SIZE) as stream:
            yield stream

    def delete(self, key: str) -> None:
        object_key = self.object_key(key)
        with self._s3_errors(DELETING, object_key):
            self.client.delete_object(Bucket=self.bucket, Key=object_key)

    def keep_copy(self, key: str) -> str | None:
        folder, _, name = key.rpartition("/")
        copy = (
            f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
            if folder
            else f".{name}.{uuid.uuid4().hex}.tmp"
        )
        source = self.object_key(key)
        if self.size_of(key) is None:
            return None
        with self._s3_errors(WRITING, self.object_key(copy)):
            # A managed copy: server side, in parts when the object is over 5 GiB.
            self.client.copy(
                {"Bucket": self.bucket, "Key": source}, self.bucket, self.object_key(copy)
            )
        return copy

    def put_back(self, copy: str, key: str) -> None:
        with self._s3_errors(WRITING, self.object_key(key)):
            self.client.copy(
                {"Bucket": self.bucket, "Key": self.object_key(copy)},
                self.bucket,
                self.object_key(key),
            )
        self.delete(copy)

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        object_key = self.object_key(key)
        try:
            with self._s3_errors(READING, object_key):
                response = self.client.get_object(Bucket=self.bucket, Key=object_key)
        except client_error() as exc:
            if error_code(exc) in MISSING_KEY_CODES:
                return None
            raise
        body = response["Body"]
        try:
            return body.read(), response["ETag"]
        finally:
            body.close()

    def replace_if(self, key: str, data: bytes, expected: str | None) -> str | None:
        # One conditional PUT (small data only: manifests and leases): S3 checks the
        # condition and writes atomically (If-None-Match: * / If-Match: ETag).
        object_key = self.object_key(key)
        request: PutObjectRequestTypeDef = {
            "Bucket": self.bucket,
            "Key": object_key,
            "Body": data,
            "ContentType": content_type(object_key),
        }
        if expected is None:
            request["IfNoneMatch"] = "*"
        else:
            request["IfMatch"] = expected
        try:
            with self._s3_errors(WRITING, object_key):
                response = self.client.put_object(**request)
        except client_error() as exc:
            if error_code(exc) in _CONDITION_FAILED_CODES | MISSING_KEY_CODES:
                return None
            raise
        return response["ETag"]

    def delete_if(self, key: str, expected: str) -> bool:
        object_key = self.object_key(key)
        try:
            with self._s3_errors(DELETING, object_key):
                self.client.delete_object(Bucket=self.bucket, Key=object_key, IfMatch=expected)
        except client_error() as exc:
            code = error_code(exc)
            if code in _CONDITION_FAILED_CODES | MISSING_KEY_CODES:
                return False
            if code not in _UNSUPPORTED_CODES:
                raise
            # No conditional deletes here: compare, then delete (a narrow race, which the
            # holder's next compare-and-swap detects).
            current = self.read_versioned(key)
            if current is None or current[1] != expected:
                return False
            self.delete(key)
        return True

    def size_of(self, key: str) -> int | None:
        object_key = self.object_key(key)
        try:
            with self._s3_errors(READING, object_key):
                response = self.client.head_object(Bucket=self.bucket, Key=object_key)
        except client_error() as exc:
            if error_code(exc) in MISSING_KEY_CODES:
                return None
            raise
        return response["ContentLength"]

    def list_files(self, folder: str) -> list[str]:
        files, _ = self._list(folder)
        return files

    def list_folders(self, prefix: str) -> list[str]:
        _, folders = self._list(prefix)
        return folders

    def _list(self, folder: str) -> tuple[list[str], list[str]]:
        """The names of the objects and of the folders directly under ``folder``, sorted."""
        base = _join_key(self.prefix, *(key_parts(folder.strip("/")) if folder.strip("/") else []))
        listed = f"{base}/" if base else ""
        files: list[str] = []
        folders: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        with self._s3_errors(LISTING, listed):
            for page in paginator.paginate(
                Bucket=self.bucket,
                Prefix=listed,
                Delimiter="/",
                PaginationConfig={"PageSize": self.list_page_size},
            ):
                files += [item["Key"].removeprefix(listed) for item in page.get("Contents", [])]
                folders += [
                    common.get("Prefix", "").removeprefix(listed).rstrip("/")
                    for common in page.get("CommonPrefixes", [])
                ]
        return sorted(name for name in files if name), sorted(name for name in folders if name)

    def presigned_url(self, key: str, expires_in: int) -> str:
        """A URL that downloads ``key`` without credentials for ``expires_in`` seconds."""
        if not 1 <= expires_in <= MAX_LINK_SECONDS:
            raise ValueError(
                f"a download link must expire in 1 second to 7 days ({MAX_LINK_SECONDS:,} s); "
                f"got {expires_in:,} s"
            )
        object_key = self.object_key(key)
        self.client.meta.events.register_first(
            "choose-signer.s3.GetObject",
            cast("Callable[..., None]", _presign_with_sigv4),  # the stubs type handlers as such
            unique_id=_PRESIGN_SIGV4_ID,
        )
        with self._s3_errors(READING, object_key):
            return self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": object_key},
                ExpiresIn=expires_in,
            )

    def abort_incomplete_uploads(
        self, older_than: timedelta, under: str = "", *, dry_run: bool = False
    ) -> list[str]:
        """Abort multipart uploads under the prefix (and ``under``) older than ``older_than``.

        Only a killed process leaves these behind (every failure the exporter sees aborts its
        own upload). Returns the object keys whose uploads were aborted (or, ``dry_run``,
        would be).
        """
        cutoff = datetime.now(UTC) - older_than
        listed = (
            self.object_key(under.rstrip("/")) + "/"
            if under
            else (f"{self.prefix}/" if self.prefix else "")
        )
        aborted: list[str] = []
        paginator = self.client.get_paginator("list_multipart_uploads")
        with self._s3_errors(ABORTING, listed):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=listed):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < cutoff:
                        aborted.append(upload["Key"])
                        if dry_run:
                            continue
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
        return aborted

    def remove_debris(
        self, folder: str, older_than: timedelta, *, dry_run: bool = False
    ) -> list[str]:
        removed = self.abort_incomplete_uploads(older_than, under=folder, dry_run=dry_run)
        # Copies kept while a file is replaced (``keep_copy``) that a killed run left.
        cutoff = datetime.now(UTC) - older_than
        listed = self.object_key(folder) + "/"
        paginator = self.client.get_paginator("list_objects_v2")
        with self._s3_errors(LISTING, listed):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=listed, Delimiter="/"):
                for item in page.get("Contents", []):
                    name = item["Key"].removeprefix(listed)
                    if TEMPORARY_NAME.fullmatch(name) and item["LastModified"] < cutoff:
                        if not dry_run:
                            self.delete(f"{folder}/{name}")
                        removed.append(item["Key"])
        return removed

    def _uri_of(self, object_key: str) -> str:
        return f"{S3_SCHEME}{self.bucket}/{object_key}"

    @contextmanager
    def _s3_errors(self, action: Action, object_key: str) -> Iterator[None]:
        """Turn the permanent S3 failures into a DestinationError that says what to fix."""
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        try:
            yield
        except ClientError as exc:
            error = self._permanent_error(exc, action, object_key)
            if error is None:
                raise
            raise error from exc
        except EndpointConnectionError as exc:
            raise DestinationError(
                f"cannot reach S3 endpoint {self._endpoint()} while {action.doing} "
                f"{self._uri_of(object_key)}: is it running / is endpoint_url right?"
            ) from exc
        except NoCredentialsError as exc:
            raise DestinationError(
                f"no AWS credentials found for {action.doing} {self._uri_of(object_key)}: set "
                f"{_CREDENTIAL_VARIABLES}"
            ) from exc

    def _permanent_error(
        self, exc: ClientError, action: Action, object_key: str
    ) -> DestinationError | None:
        code = error_code(exc)
        target = self._uri_of(object_key)
        if code == "NoSuchBucket":
            return DestinationError(
                f"bucket {self.bucket} does not exist ({action.doing} {target}): create it or "
                "fix EXPORT_DESTINATION"
            )
        if code in _REFUSED_CREDENTIAL_CODES:
            return DestinationError(
                f"S3 rejected the credentials ({code}) while {action.doing} {target}: check "
                f"{_CREDENTIAL_VARIABLES}; they must be valid for {self._endpoint()}"
            )
        if code == "AccessDenied":
            return DestinationError(
                f"access denied while {action.doing} {target}: the credentials from "
                f"{_CREDENTIAL_VARIABLES} need {action.permission} on bucket {self.bucket}"
            )
        return None

    def _endpoint(self) -> str:
        """The client's endpoint as scheme://host:port (never any user:password@ in it)."""
        parts = urlsplit(self.client.meta.endpoint_url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _presign_with_sigv4(signature_version: str, **_: Any) -> str | None:
    """Keep SigV4 for presigned URLs.

    Unless a client is configured with a signature version, botocore presigns S3 URLs with
    the legacy SigV2 in regions that still accept it; SigV4 links work in every region and
    S3 itself enforces their expiry limit (7 days).
    """
    return signature_version if signature_version in {"s3v4-query", "v4-query"} else None
