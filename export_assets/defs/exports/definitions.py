"""The export domain's definitions: daily records, templates, requests and their jobs."""

from __future__ import annotations

from dagster import Definitions

from export_assets.defs.exports import EXPORT_ASSETS
from export_assets.defs.exports.checks import verify_exports_job
from export_assets.defs.exports.templates import REQUEST_ASSETS, TEMPLATE_ASSETS
from export_assets.defs.exports.jobs import DAILY_JOBS


def definitions() -> Definitions:
    """Every export asset (each reports its checks from its own step) and the export jobs;
    ``verify_exports_job`` re-reads published partitions on demand."""
    return Definitions(
        # The daily records, then the other copies: templates and on-demand requests, each
        # under its own key and folder (export_assets.defs.exports.templates).
        assets=[*EXPORT_ASSETS, *TEMPLATE_ASSETS, *REQUEST_ASSETS],
        jobs=[*DAILY_JOBS, verify_exports_job],
    )
