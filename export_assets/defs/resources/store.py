"""The export store: which destination exports go to, as a Dagster resource."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from dagster import ConfigurableResource
from pydantic import Field, field_validator

from export_assets.lib.exports.destinations import Destination, LocalDestination
from export_assets.settings import current_settings

if TYPE_CHECKING:
    from dagster_aws.s3 import S3Resource


class ExportStore(ConfigurableResource):  # type: ignore[type-arg]
    """Where exports are published: a local directory or ``s3://bucket/prefix``.

    Shared by the IO manager that writes and the checks and tools that read back.
    """

    destination: str = Field(
        default="exports",
        description="A local directory or s3://bucket/prefix (EXPORT_DESTINATION).",
    )
    # Typed as any resource, not S3Resource: importing dagster_aws (boto3, botocore and
    # Dagster's test utilities, ~0.9 s) is paid only by runs that write to S3.
    s3: ConfigurableResource | None = Field(  # type: ignore[type-arg]
        default=None,
        description="A dagster_aws.s3.S3Resource with the S3 client settings (region, "
        "credentials, endpoint_url for MinIO and other S3-compatible stores) for s3:// "
        "destinations; unset, a default S3Resource, where the standard AWS_* variables apply.",
    )

    @field_validator("s3", mode="before")
    @classmethod
    def _an_s3_resource(cls, value: Any) -> Any:
        # Before pydantic's own validation (which would build a bare resource from a dict),
        # and duck-typed, so that checking does not import dagster_aws either.
        if value is not None and not callable(getattr(value, "get_client", None)):
            raise ValueError(
                f"s3 is a {type(value).__name__}, not an S3 resource: pass "
                "dagster_aws.s3.S3Resource(region_name=..., endpoint_url=...), or leave s3 unset "
                "for the AWS_* environment variables"
            )
        return value

    def open(self) -> Destination:
        """The destination, with a client when it is S3."""
        if self.destination.startswith("s3://"):
            from export_assets.lib.exports.s3 import S3Destination, parse_s3_location

            bucket, prefix = parse_s3_location(self.destination)
            return S3Destination(self.s3_resource().get_client(), bucket, prefix)
        return LocalDestination(Path(self.destination.removeprefix("file://")))

    def s3_resource(self) -> S3Resource:
        """The S3 resource that makes clients: the configured one, else a default one."""
        if self.s3 is None:
            from dagster_aws.s3 import S3Resource

            return S3Resource()
        return cast("S3Resource", self.s3)  # anything with get_client(): see _an_s3_resource


def store_from_environment() -> ExportStore:
    """The store the code location uses: ``EXPORT_DESTINATION``, else ``./exports``."""
    return ExportStore(destination=current_settings().destination)
