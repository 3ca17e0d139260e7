"""``validation_events``: every validation result recorded in the partition's UTC day."""
# No "from __future__ import annotations": Dagster reads the config and resource annotations.

from collections.abc import Iterator

import pyarrow as pa
from pydantic import Field, field_validator

from export_assets.defs.exports.daily import DayContext, daily_export
from export_assets.defs.source import DATABASE
from export_assets.lib.security.credentials import mask_columns
from export_assets.lib.exports import Export
from export_assets.defs.exports.config import ExportConfig
from export_assets.lib.exports.export import closed_on_error
from export_assets.defs.partitions import partition_day
from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.lib.source import validations
from export_assets.lib.source.validations import VALIDATION_EVENTS_SCHEMA, ValidationFilters

# Free text that may quote a proxy URL with its user:pass@ (remote errors echo requests).
_MASKED_COLUMNS = frozenset({"proxy_url", "error_message"})


class ValidationEventsConfig(ExportConfig):
    """Run config of ``validation_events``: the export options and which results to keep."""

    # An unknown name in fields is refused at launch.
    field_names = tuple(VALIDATION_EVENTS_SCHEMA.names)

    proxy_urls: list[str] | None = Field(
        default=None,
        description=(
            "Only the results of these proxies, given as ProxyWhirl stores their URL "
            "(e.g. socks5://1.2.3.4:1080). Unset: every proxy."
        ),
    )
    is_valid: bool | None = Field(
        default=None,
        description="Only successful checks (true) or only failed ones (false). Unset: both.",
    )
    error_types: list[str] | None = Field(
        default=None,
        description=(
            "Only results with one of these error types (timeout, connection_refused, "
            "ssl_error, proxy_error, http_error, dns_error, or any other value ProxyWhirl "
            "recorded); successful checks have none. Unset: every result."
        ),
    )

    @field_validator("proxy_urls", "error_types")
    @classmethod
    def _not_empty(cls, values: list[str] | None) -> list[str] | None:
        if values is not None and not values:
            raise ValueError("an empty list matches nothing: list values, or leave it unset")
        return values

    def filters(self) -> ValidationFilters:
        """The source filters this config selects."""
        return ValidationFilters(
            proxy_urls=None if self.proxy_urls is None else tuple(self.proxy_urls),
            is_valid=self.is_valid,
            error_types=None if self.error_types is None else tuple(self.error_types),
        )


@daily_export(
    deps=[DATABASE],
    schema=VALIDATION_EVENTS_SCHEMA,
    kinds={"sqlite", "csv"},
    description=(
        "Every validation result ProxyWhirl recorded in the partition's UTC day "
        "([D 00:00, D+1 00:00)), in id order, optionally filtered by proxy, outcome and "
        "error type. The union over all days is the validation history, row for row. "
        "Credentials in URLs and error messages are masked."
    ),
)
def validation_events(
    context: DayContext, config: ValidationEventsConfig, proxywhirl: ProxyWhirlSource
) -> Export:
    day = partition_day(context.partition_key)
    filters = config.filters()
    snapshot = proxywhirl.open_snapshot(identities=False)  # events need only the watermark
    with closed_on_error(snapshot.close):
        ids = validations.validation_id_range(snapshot, day, filters)
    source = {
        "database": proxywhirl.database,
        "day": day.isoformat(),
        "validation_results_min_id": None if ids is None else ids[0],
        "validation_results_max_id": None if ids is None else ids[1],
    }
    context.log.info(
        f"validation results of {day} from {proxywhirl.database}: ids "
        f"{'none' if ids is None else f'{ids[0]} to {ids[1]}'}"
    )
    # Read (and mask) in a thread while the IO manager formats and compresses.
    events = validations.read_ahead(
        _masked(validations.validation_events(snapshot, day, ids, filters))
    )

    def close() -> None:
        events.close()  # stops the reading thread before its connection goes
        snapshot.close()
        reads = snapshot.reads
        context.log.info(
            f"read in {reads.reads} short reads up to validation id {snapshot.watermark}: each "
            f"held the database's read lock {reads.held_max * 1000:.0f} ms at most; "
            f"{reads.waited_total:.1f} s spent waiting for ProxyWhirl's commits"
        )

    return Export(
        schema=VALIDATION_EVENTS_SCHEMA,
        batches=events,
        options=config.options(),
        source=source,
        close=close,
        estimated_rows=None if ids is None else ids[1] - ids[0] + 1,
    )


def _masked(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    return (mask_columns(batch, _MASKED_COLUMNS) for batch in batches)
