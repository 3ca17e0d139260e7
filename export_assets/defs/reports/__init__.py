"""The report domain: the weekly PDF health report and the analytics workbook."""

from export_assets.defs.reports.analytics_workbook import analytics_workbook
from export_assets.defs.reports.health_report import health_report

REPORT_ASSETS = [health_report, analytics_workbook]
"""The weekly reports (group proxywhirl_reports), built from the exports' source."""

__all__ = ["REPORT_ASSETS", "analytics_workbook", "health_report"]
