"""``proxy_metrics``: the partition's UTC day of checks, per proxy, protocol, country and pool.

The columns, the groups and the percentile rule are documented in
``export_assets.lib.source.metrics``.
"""
# No "from __future__ import annotations": Dagster reads the config and resource annotations.

from collections.abc import Iterator

import pyarrow as pa

from export_assets.defs.exports.daily import DayContext, daily_export
from export_assets.defs.source import DATABASE
from export_assets.lib.security.credentials import mask_url_credentials_array
from export_assets.lib.exports import Export
from export_assets.defs.exports.config import ExportConfig
from export_assets.lib.exports.export import closed_on_error
from export_assets.defs.partitions import partition_day
from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.lib.source import validations
from export_assets.lib.source import metrics
from export_assets.lib.source.metrics import PROXY_METRICS_SCHEMA


class ProxyMetricsConfig(ExportConfig):
    """Run config of ``proxy_metrics``: the export options."""

    # An unknown name in fields is refused at launch.
    field_names = tuple(PROXY_METRICS_SCHEMA.names)


@daily_export(
    deps=[DATABASE],
    schema=PROXY_METRICS_SCHEMA,
    kinds={"sqlite", "csv"},
    description=(
        "Check metrics of the partition's UTC day, one row per group (scope, key): the pool "
        "(all), each protocol, each country ((none) when unknown) and each proxy. Checks, "
        "successes, failures, success rate; latency avg/p50/p95/max over successful checks "
        "(percentiles by linear interpolation, like numpy's default); errors by type "
        "(errors_timeout ... errors_dns_error, errors_other). Checks of proxies missing from "
        "proxy_identities count as (unknown)."
    ),
)
def proxy_metrics(
    context: DayContext, config: ProxyMetricsConfig, proxywhirl: ProxyWhirlSource
) -> Export:
    day = partition_day(context.partition_key)
    snapshot = proxywhirl.open_snapshot()
    with closed_on_error(snapshot.close):
        ids = validations.validation_id_range(snapshot, day)
    source = {
        "database": proxywhirl.database,
        "day": day.isoformat(),
        "validation_results_min_id": None if ids is None else ids[0],
        "validation_results_max_id": None if ids is None else ids[1],
    }
    context.log.info(f"metrics of the checks of {day} from {proxywhirl.database}")
    return Export(
        schema=PROXY_METRICS_SCHEMA,
        batches=_masked(metrics.proxy_metrics(snapshot, day, ids)),
        options=config.options(),
        source=source,
        close=snapshot.close,
    )


def _masked(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    # Keys are proxy URLs (and free-text protocols and countries): mask any user:pass@.
    for batch in batches:
        key = PROXY_METRICS_SCHEMA.get_field_index("key")
        yield batch.set_column(
            key, PROXY_METRICS_SCHEMA.field(key), mask_url_credentials_array(batch.column(key))
        )
