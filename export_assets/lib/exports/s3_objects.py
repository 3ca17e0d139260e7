"""The objects of an S3 destination: a multipart upload that appears only when complete, a
buffered reader, and what each S3 call was doing when it failed (for its error message).

``export_assets.lib.exports.s3.S3Destination`` opens them; its ``_s3_errors`` turns a
failed call into an error that says what to fix.
"""

from __future__ import annotations

import io
import mimetypes
from dataclasses import dataclass
from typing import TYPE_CHECKING

from export_assets.lib.exports.destinations import DestinationError

if TYPE_CHECKING:
    from botocore.exceptions import ClientError
    from botocore.response import StreamingBody
    from mypy_boto3_s3.type_defs import (
        CompletedPartTypeDef,
        CreateMultipartUploadRequestTypeDef,
        PutObjectRequestTypeDef,
        UploadPartRequestTypeDef,
    )

    from export_assets.lib.exports.s3 import S3Destination

MAX_PARTS = 10_000  # S3's most parts of one upload
MISSING_KEY_CODES = frozenset({"NoSuchKey", "404"})


@dataclass(frozen=True)
class Action:
    """What was being done, for error messages: the verb and the IAM permission it needs."""

    doing: str
    permission: str


WRITING = Action("writing", "s3:PutObject")
READING = Action("reading", "s3:GetObject")
LISTING = Action("listing", "s3:ListBucket")
DELETING = Action("deleting", "s3:DeleteObject")
ABORTING = Action("aborting uploads under", "s3:ListBucketMultipartUploads")


def client_error() -> type[ClientError]:
    """botocore's ClientError, imported only once S3 is used (a client exists by then), so
    that loading the code location for local exports never imports botocore."""
    from botocore.exceptions import ClientError

    return ClientError


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def content_type(object_key: str) -> str:
    """What a browser should make of a downloaded file (compressed files stay opaque)."""
    kind, encoding = mimetypes.guess_type(object_key)
    return kind if kind is not None and encoding is None else "application/octet-stream"


class MultipartUpload(io.RawIOBase):
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
        with self._destination._s3_errors(WRITING, self._key):
            if self._upload_id is None:
                request: PutObjectRequestTypeDef = {
                    "Bucket": self._destination.bucket,
                    "Key": self._key,
                    "Body": bytes(self._buffer),
                    "ContentType": content_type(self._key),
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
        with self._destination._s3_errors(WRITING, self._key):
            if self._upload_id is None:
                create: CreateMultipartUploadRequestTypeDef = {
                    "Bucket": bucket,
                    "Key": self._key,
                    "ContentType": content_type(self._key),
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


class ObjectReader(io.RawIOBase):
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
            with destination._s3_errors(READING, self._key):
                response = destination.client.get_object(
                    Bucket=destination.bucket,
                    Key=self._key,
                    Range=f"bytes={offset}-",
                    IfMatch=self._etag,
                )
        except client_error() as exc:
            if error_code(exc) in {"PreconditionFailed", *MISSING_KEY_CODES}:
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
