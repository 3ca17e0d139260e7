"""The report domain's job: the weekly reports of a partition's week."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from export_assets.defs.exports.daily import REPORT_GROUP
from export_assets.defs.operations.audit import TEMPLATE_TAG

weekly_report_job = define_asset_job(
    name="weekly_report_job",
    tags={TEMPLATE_TAG: "weekly_report_job"},
    selection=AssetSelection.groups(REPORT_GROUP),
    description="The weekly reports of the 7 UTC days ending on the partition's day: the PDF "
    "health_report and the analytics_workbook (xlsx).",
)
