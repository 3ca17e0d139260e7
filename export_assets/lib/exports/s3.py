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
import mimetypes
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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

if TYPE_CHECKING:
    from botocore.exceptions import ClientError
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import (
        CompletedPartTypeDef,
        CreateMultipartUploadRequestTypeDef,
        PutObjectRequestTypeDef,
        UploadPartRequestTypeDef,
    )

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * MIB
MAX_LIST_PAGE_SIZE = 1000
READ_BUFFER_SIZE = 1 * MIB
MAX_LINK_SECONDS = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live
_PRESIGN_SIGV4_ID = "export_assets.s3.presign-with-sigv4"

S3_SCHEME = "s3://"
# What botocore accepts as a bucket name (legacy names included); S3 itself is stricter.
_BUCKET_NAME = re.compile(r"[a-zA-Z0-9.\-_]{1,255}")
_MISSING_KEY_CODES = frozenset({"NoSuchKey", "404"})
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


@dataclass(frozen=True)
class _Action:
    """What was being done, for error messages: the verb and the IAM permission it needs."""

    doing: str
    permission: str


_WRITING = _Action("writing", "s3:PutObject")
_READING = _Action("reading", "s3:GetObject")
_LISTING = _Action("listing", "s3:ListBucket")
_DELETING = _Action("deleting", "s3:DeleteObject")
_ABORTING = _Action("aborting uploads under", "s3:ListBucketMultipartUploads")


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
        upload = _MultipartUpload(self, self.object_key(key))
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
            with self._s3_errors(_READING, object_key):
                response = self.client.get_object(Bucket=self.bucket, Key=object_key)
        except _client_error() as exc:
            if _error_code(exc) in _MISSING_KEY_CODES:
                raise FileNotFoundError(
                    errno.ENOENT, "no such export file", self._uri_of(object_key)
                ) from None
            raise
        raw = _ObjectReader(
            self, object_key, response["Body"], response["ContentLength"], response["ETag"]
        )
        with io.BufferedReader(raw, buffer_size=READ_BUFFER_SIZE) as stream:
            yield stream

    def delete(self, key: str) -> None:
        object_key = self.object_key(key)
        with self._s3_errors(_DELETING, object_key):
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
        with self._s3_errors(_WRITING, self.object_key(copy)):
            # A managed copy: server side, in parts when the object is over 5 GiB.
            self.client.copy(
                {"Bucket": self.bucket, "Key": source}, self.bucket, self.object_key(copy)
            )
        return copy

    def put_back(self, copy: str, key: str) -> None:
        with self._s3_errors(_WRITING, self.object_key(key)):
            self.client.copy(
                {"Bucket": self.bucket, "Key": self.object_key(copy)},
                self.bucket,
                self.object_key(key),
            )
        self.delete(copy)

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        object_key = self.object_key(key)
        try:
            with self._s3_errors(_READING, object_key):
                response = self.client.get_object(Bucket=self.bucket, Key=object_key)
        except _client_error() as exc:
            if _error_code(exc) in _MISSING_KEY_CODES:
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
            "ContentType": _content_type(object_key),
        }
        if expected is None:
            request["IfNoneMatch"] = "*"
        else:
            request["IfMatch"] = expected
        try:
            with self._s3_errors(_WRITING, object_key):
                response = self.client.put_object(**request)
        except _client_error() as exc:
            if _error_code(exc) in _CONDITION_FAILED_CODES | _MISSING_KEY_CODES:
                return None
            raise
        return response["ETag"]

    def delete_if(self, key: str, expected: str) -> bool:
        object_key = self.object_key(key)
        try:
            with self._s3_errors(_DELETING, object_key):
                self.client.delete_object(Bucket=self.bucket, Key=object_key, IfMatch=expected)
        except _client_error() as exc:
            code = _error_code(exc)
            if code in _CONDITION_FAILED_CODES | _MISSING_KEY_CODES:
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
            with self._s3_errors(_READING, object_key):
                response = self.client.head_object(Bucket=self.bucket, Key=object_key)
        except _client_error() as exc:
            if _error_code(exc) in _MISSING_KEY_CODES:
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
        with self._s3_errors(_LISTING, listed):
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
        with self._s3_errors(_READING, object_key):
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
        with self._s3_errors(_ABORTING, listed):
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
        with self._s3_errors(_LISTING, listed):
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
    def _s3_errors(self, action: _Action, object_key: str) -> Iterator[None]:
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
        self, exc: ClientError, action: _Action, object_key: str
    ) -> DestinationError | None:
        code = _error_code(exc)
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


def _client_error() -> type[ClientError]:
    """botocore's ClientError, imported only once S3 is used (a client exists by then), so
    that loading the code location for local exports never imports botocore."""
    from botocore.exceptions import ClientError

    return ClientError


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _content_type(object_key: str) -> str:
    """What a browser should make of a downloaded file (compressed files stay opaque)."""
    kind, encoding = mimetypes.guess_type(object_key)
    return kind if kind is not None and encoding is None else "application/octet-stream"


class _MultipartUpload(io.RawIOBase):
    """Write-only stream that uploads each part as it fills; nothing is visible until complete.

    At most one part (plus the tail of the current write) is held in memory. A file smaller
    than one part is sent with a single PUT when complete. Closing the stream neither
    publishes nor aborts: the ``open_write`` block does one or the other.
    """

    def __init__(self, destination: S3Destination, object_key: str) -> None:
        super().__init__()
        self._destination = destination
        self._client = destination.client
        self._key = object_key
        self._part_size = destination.part_size
        # Same default as boto3's own transfers: CRC32 per part unless the client was
        # configured with request_checksum_calculation="when_required".
        checksums = getattr(self._client.meta.config, "request_checksum_calculation", None)
        self._crc32 = checksums in (None, "when_supported")
        self._buffer = bytearray()
        self._parts: list[CompletedPartTypeDef] = []
        self._upload_id: str | None = None
        self._position = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError(f"write to the closed upload stream of {self._uri()}")
        view = memoryview(data).cast("B")
        written = view.nbytes
        while view.nbytes:
            room = self._part_size - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            if len(self._buffer) == self._part_size:
                part, self._buffer = bytes(self._buffer), bytearray()
                self._upload_part(part)
        self._position += written
        return written

    def complete(self) -> None:
        """Publish what was written: complete the multipart upload, or PUT a small file."""
        with self._destination._s3_errors(_WRITING, self._key):
            if self._upload_id is None:
                request: PutObjectRequestTypeDef = {
                    "Bucket": self._destination.bucket,
                    "Key": self._key,
                    "Body": bytes(self._buffer),
                    "ContentType": _content_type(self._key),
                }
                self._client.put_object(**request)
            else:
                if self._buffer:
                    part, self._buffer = bytes(self._buffer), bytearray()
                    self._upload_part(part)
                self._client.complete_multipart_upload(
                    Bucket=self._destination.bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
                self._upload_id = None
        self._buffer = bytearray()

    def abort(self, cause: BaseException) -> None:
        """Abort the pending upload, if any; a failure to abort is noted on ``cause``."""
        self._buffer = bytearray()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        try:
            self._client.abort_multipart_upload(
                Bucket=self._destination.bucket, Key=self._key, UploadId=upload_id
            )
        except Exception as exc:
            cause.add_note(
                f"the incomplete multipart upload {upload_id} of {self._uri()} could not be "
                f"aborted ({type(exc).__name__}); S3Destination.abort_incomplete_uploads or a "
                "bucket lifecycle rule (AbortIncompleteMultipartUpload) removes it"
            )

    def _upload_part(self, body: bytes) -> None:
        if len(self._parts) == MAX_PARTS:
            raise DestinationError(
                f"{self._uri()} needs more than {MAX_PARTS:,} parts of {self._part_size:,} "
                "bytes: give S3Destination a bigger part_size"
            )
        bucket = self._destination.bucket
        with self._destination._s3_errors(_WRITING, self._key):
            if self._upload_id is None:
                create: CreateMultipartUploadRequestTypeDef = {
                    "Bucket": bucket,
                    "Key": self._key,
                    "ContentType": _content_type(self._key),
                }
                if self._crc32:
                    create["ChecksumAlgorithm"] = "CRC32"
                self._upload_id = self._client.create_multipart_upload(**create)["UploadId"]
            number = len(self._parts) + 1
            request: UploadPartRequestTypeDef = {
                "Bucket": bucket,
                "Key": self._key,
                "UploadId": self._upload_id,
                "PartNumber": number,
                "Body": body,
            }
            if self._crc32:
                request["ChecksumAlgorithm"] = "CRC32"
            response = self._client.upload_part(**request)
        part: CompletedPartTypeDef = {"ETag": response["ETag"], "PartNumber": number}
        if self._crc32 and "ChecksumCRC32" in response:
            part["ChecksumCRC32"] = response["ChecksumCRC32"]
        self._parts.append(part)

    def _uri(self) -> str:
        return self._destination._uri_of(self._key)


class _ObjectReader(io.RawIOBase):
    """Reads an object as it streams in; a seek re-opens the stream at the new offset.

    Every re-opened range is pinned to the ETag of the first response, so a reader never
    mixes bytes of two versions of an object that is replaced while it is being read.
    """

    def __init__(
        self,
        destination: S3Destination,
        object_key: str,
        body: StreamingBody,
        size: int,
        etag: str,
    ) -> None:
        super().__init__()
        self._destination = destination
        self._key = object_key
        self._body: StreamingBody | None = body
        self._size = size
        self._etag = etag
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        origin = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        target = origin + offset
        if target < 0:
            raise ValueError(f"negative seek position {target} in {self._uri()}")
        if target != self._position:
            self._close_body()
            self._position = target
        return target

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._position >= self._size:
            return 0
        if self._body is None:
            self._body = self._open_at(self._position)
        view = memoryview(buffer).cast("B")
        data = self._body.read(view.nbytes)
        view[: len(data)] = data
        self._position += len(data)
        return len(data)

    def close(self) -> None:
        self._close_body()
        super().close()

    def _open_at(self, offset: int) -> StreamingBody:
        destination = self._destination
        try:
            with destination._s3_errors(_READING, self._key):
                response = destination.client.get_object(
                    Bucket=destination.bucket,
                    Key=self._key,
                    Range=f"bytes={offset}-",
                    IfMatch=self._etag,
                )
        except _client_error() as exc:
            if _error_code(exc) in {"PreconditionFailed", *_MISSING_KEY_CODES}:
                raise DestinationError(
                    f"{self._uri()} was replaced or deleted while it was being read: read it again"
                ) from exc
            raise
        return response["Body"]

    def _close_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def _uri(self) -> str:
        return self._destination._uri_of(self._key)
