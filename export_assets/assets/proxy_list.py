"""``proxy_list``: the proxy pool as of the end of each UTC day."""
# No "from __future__ import annotations": Dagster reads the config and resource annotations.

from collections.abc import Iterator

import pyarrow as pa
from dagster import AssetExecutionContext, asset

from export_assets.credentials import mask_url_credentials_array
from export_assets.exports import Export, ExportConfig
from export_assets.partitions import daily_partitions, next_day, partition_day
from export_assets.source import POOL_SCHEMA, ProxyWhirlSource

# Free-text URL columns that could carry user:pass@ if a source put it there.
_URL_COLUMNS = ("url", "source_url")


class ProxyListConfig(ExportConfig):
    """Run config of ``proxy_list``."""


@asset(
    partitions_def=daily_partitions,
    group_name="proxywhirl_exports",
    kinds={"sqlite", "csv"},
    description=(
        "The proxy pool as of the end of the partition's UTC day: every proxy discovered by "
        "then, with health rebuilt from the validation history up to then by ProxyWhirl's "
        "rules. Never holds credentials."
    ),
)
def proxy_list(
    context: AssetExecutionContext, config: ProxyListConfig, proxywhirl: ProxyWhirlSource
) -> Export:
    as_of = next_day(partition_day(context.partition_key))
    snapshot = proxywhirl.open_snapshot()
    try:
        source = {
            "database": proxywhirl.database,
            "as_of": f"{as_of.isoformat()}T00:00:00Z",
            "validation_results_max_id": snapshot.validation_watermark(as_of),
        }
    except BaseException:
        snapshot.close()
        raise
    context.log.info(f"proxy pool as of {source['as_of']} from {proxywhirl.database}")
    return Export(
        schema=POOL_SCHEMA,
        batches=_without_credentials(snapshot.proxy_pool(as_of)),
        options=config.options(),
        source=source,
        close=snapshot.close,
    )


def _without_credentials(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        columns = [
            mask_url_credentials_array(column) if name in _URL_COLUMNS else column
            for name, column in zip(batch.schema.names, batch.columns, strict=True)
        ]
        yield pa.RecordBatch.from_arrays(columns, schema=batch.schema)
