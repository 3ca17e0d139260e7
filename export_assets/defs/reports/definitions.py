"""The report domain's definitions: the weekly reports and their job."""

from __future__ import annotations

from dagster import Definitions

from export_assets.defs.reports import REPORT_ASSETS
from export_assets.defs.reports.jobs import weekly_report_job


def definitions() -> Definitions:
    """The weekly PDF and workbook, run by ``weekly_report_job``."""
    return Definitions(assets=REPORT_ASSETS, jobs=[weekly_report_job])
