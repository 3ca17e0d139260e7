"""Jobs: named selections of export assets."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from export_assets.partitions import daily_partitions

EXPORT_GROUP = "proxywhirl_exports"

daily_export_job = define_asset_job(
    name="daily_export_job",
    selection=AssetSelection.groups(EXPORT_GROUP),
    partitions_def=daily_partitions,
    description="Every daily export of one UTC day, written to EXPORT_DESTINATION.",
)
