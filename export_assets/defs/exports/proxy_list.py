"""``proxy_list``: the proxy pool as of the end of each UTC day."""
# No "from __future__ import annotations": Dagster reads the config and resource annotations.

from collections.abc import Iterator
from dataclasses import replace
from enum import StrEnum

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from export_assets.defs.exports.daily import DayContext, daily_export
from export_assets.defs.source import DATABASE
from export_assets.lib.security.policy import (
    CREDENTIAL_COLUMNS,
    CREDENTIALS_DESCRIPTION,
    CredentialChoice,
    credential_protection,
    database_credentials,
    pool_schema,
    with_credentials,
)
from export_assets.lib.security.credentials import mask_columns
from export_assets.lib.exports import Export
from export_assets.defs.exports.config import ExportConfig
from export_assets.lib.exports.export import ExportOptions, closed_on_error
from export_assets.defs.partitions import (
    next_day,
    partition_day,
)
from export_assets.lib.source import POOL_SCHEMA
from export_assets.defs.resources.proxywhirl import ProxyWhirlSource


class HealthStatus(StrEnum):
    """ProxyWhirl's health statuses, as a launchpad choice."""

    healthy = "healthy"
    unhealthy = "unhealthy"
    dead = "dead"
    unknown = "unknown"


# Free-text URL columns that could carry user:pass@ if a source put it there.
_URL_COLUMNS = ("url", "source_url")


class ProxyListConfig(ExportConfig):
    """Run config of ``proxy_list``: the export options and which proxies to keep."""

    # An unknown name in fields is refused at launch.
    field_names = (*POOL_SCHEMA.names, *CREDENTIAL_COLUMNS)

    protocols: list[str] | None = Field(
        default=None, description="Keep these protocols only (http, https, socks4, socks5)."
    )
    countries: list[str] | None = Field(
        default=None,
        description="Keep these ISO country codes only (any case); proxies without a country "
        "are dropped when this is set.",
    )
    health_statuses: list[HealthStatus] | None = Field(
        default=None,
        description="Keep these health statuses (as of the end of the day) only.",
    )
    sources: list[str] | None = Field(
        default=None, description="Keep proxies from these sources only (exact match)."
    )
    min_success_rate: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Keep proxies whose lifetime success rate is at least this (0 to 1); "
        "never-checked proxies are dropped when this is set.",
    )

    credentials: CredentialChoice = Field(
        default=CredentialChoice.redact, description=CREDENTIALS_DESCRIPTION
    )

    def options(self) -> ExportOptions:
        """The export options, with the credential policy."""
        return replace(super().options(), credential_policy=self.credentials.value)

    def keeps(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The rows of ``batch`` these filters keep."""
        conditions = []
        if self.protocols is not None:
            conditions.append(pc.is_in(batch["protocol"], pa.array(self.protocols, pa.string())))
        if self.countries is not None:
            wanted = pa.array([code.upper() for code in self.countries], pa.string())
            conditions.append(pc.is_in(pc.utf8_upper(batch["country_code"]), wanted))
        if self.health_statuses is not None:
            wanted = pa.array([str(status) for status in self.health_statuses], pa.string())
            conditions.append(pc.is_in(batch["health_status"], wanted))
        if self.sources is not None:
            conditions.append(pc.is_in(batch["source"], pa.array(self.sources, pa.string())))
        if self.min_success_rate is not None:
            conditions.append(pc.greater_equal(batch["success_rate"], self.min_success_rate))
        if not conditions:
            return batch
        keep = conditions[0]
        for condition in conditions[1:]:
            keep = pc.and_kleene(keep, condition)
        return batch.filter(pc.fill_null(keep, False))


@daily_export(
    deps=[DATABASE],
    schema=POOL_SCHEMA,
    kinds={"sqlite", "csv"},
    description=(
        "The proxy pool as of the end of the partition's UTC day: every proxy discovered by "
        "then, with health rebuilt from the validation history up to then by ProxyWhirl's "
        "rules. Credentials only as the credentials option says (default: redacted)."
    ),
)
def proxy_list(
    context: DayContext, config: ProxyListConfig, proxywhirl: ProxyWhirlSource
) -> Export:
    as_of = next_day(partition_day(context.partition_key))
    options = config.options()
    protection = credential_protection(options.credential_policy)
    schema = pool_schema(POOL_SCHEMA, options.credential_policy, options.fields)
    snapshot = proxywhirl.open_snapshot()
    with closed_on_error(snapshot.close):
        source = {
            "database": proxywhirl.database,
            "as_of": f"{as_of.isoformat()}T00:00:00Z",
            "validation_results_max_id": snapshot.validation_watermark(as_of),
        }
        credentials = database_credentials(snapshot, protection)
    context.log.info(f"proxy pool as of {source['as_of']} from {proxywhirl.database}")
    pool = (config.keeps(batch) for batch in _masked(snapshot.proxy_pool(as_of)))
    return Export(
        schema=schema,
        batches=with_credentials(pool, schema, credentials),
        options=options,
        source=source,
        close=snapshot.close,
        encryption=protection.encryption,
    )


def _masked(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    return (mask_columns(batch, _URL_COLUMNS) for batch in batches)
