"""The report domain's definitions: the weekly reports and their job."""

from __future__ import annotations

from dagster import Definitions

from export_assets.defs.jobs import weekly_report_job
from export_assets.defs.reports import REPORT_ASSETS


def definitions() -> Definitions:
    """The weekly PDF and workbook, run by ``weekly_report_job``."""
    return Definitions(assets=REPORT_ASSETS, jobs=[weekly_report_job])
