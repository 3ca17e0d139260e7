"""The export store: which destination exports go to, as a Dagster resource."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource
from dagster_aws.s3 import S3Resource
from pydantic import Field

from export_assets.exports.destinations import Destination, LocalDestination
from export_assets.exports.s3 import S3Destination, parse_s3_location


class ExportStore(ConfigurableResource):  # type: ignore[type-arg]
    """Where exports are published: a local directory or ``s3://bucket/prefix``.

    Shared by the IO manager that writes and the checks and tools that read back.
    """

    destination: str = Field(
        default="exports",
        description="A local directory or s3://bucket/prefix (EXPORT_DESTINATION).",
    )
    s3: S3Resource = Field(
        default_factory=S3Resource,
        description="S3 client settings (region, credentials, endpoint_url for MinIO and other "
        "S3-compatible stores) for s3:// destinations; the standard AWS_* variables apply.",
    )

    def open(self) -> Destination:
        """The destination, with a client when it is S3."""
        if self.destination.startswith("s3://"):
            bucket, prefix = parse_s3_location(self.destination)
            return S3Destination(self.s3.get_client(), bucket, prefix)
        return LocalDestination(Path(self.destination.removeprefix("file://")))


def store_from_environment() -> ExportStore:
    """The store the code location uses: ``EXPORT_DESTINATION``, else ``./exports``."""
    return ExportStore(destination=os.environ.get("EXPORT_DESTINATION", "exports"))
