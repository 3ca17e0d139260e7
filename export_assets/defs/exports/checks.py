"""The deep re-read: ``verify_exports_job`` proves published partitions against their manifests.

Every export proves itself while it is written (``export_assets.defs.exports.daily``). This job is
the audit afterwards, for what may have happened since (a person, a broken disk, another
tool): it reads each published partition of a range of days back through its destination,
checks that every data file parses in its format with the manifest's rows, bytes and
sha256, and scans the files and the manifest for credentials. Each day's outcome is recorded
as that partition's ``export_is_intact`` and ``no_credential_leak`` check results, so the
asset's Checks tab shows the audit; the run fails if any partition failed.
"""
# No "from __future__ import annotations": Dagster reads the op's config and resource types.

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

from dagster import (
    AssetCheckSeverity,
    AssetKey,
    Failure,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    job,
    op,
)
from pydantic import Field, field_validator

from export_assets.defs.operations.audit import TEMPLATE_TAG
from export_assets.defs.exports.daily import as_evaluation, reread_results
from export_assets.defs.exports.config import FailFastConfig
from export_assets.defs.resources.io_manager import read_manifest
from export_assets.lib.exports.manifest import (
    PARTITION_FOLDER_PREFIX,
    is_partition_key,
    manifest_key,
)
from export_assets.defs.resources.store import ExportStore
from export_assets.lib.security.leaks import LeakScanner, known_credentials
from export_assets.defs.resources.proxywhirl import ProxyWhirlSource

VERIFIED_ASSETS = (
    "proxy_list", "proxy_changes", "validation_events", "proxy_metrics", "proxy_logs",
    "pool_config", "health_report", "analytics_workbook", "export_audit_log",
    "backup/proxy_list", "backup/pool_config", "analytics/validation_events",
    "analytics/proxy_metrics", "compliance/proxy_logs",
)
"""The daily records and the templates (a request's copies are re-read from its own asset:
its "Execute checks" with the request's name)."""


class VerifyExportsConfig(FailFastConfig):
    """Which published partitions ``verify_exports_job`` re-reads."""

    assets: list[str] = Field(
        default=list(VERIFIED_ASSETS),
        description=f"Assets to verify; default every export: {', '.join(VERIFIED_ASSETS)}.",
    )
    last_days: int = Field(
        default=30, ge=1, le=3660,
        description="How many UTC days to verify, ending with end_date.",
    )
    end_date: str | None = Field(
        default=None, description="Last day to verify (YYYY-MM-DD). Unset: yesterday (UTC)."
    )

    @field_validator("assets")
    @classmethod
    def _known_assets(cls, assets: list[str]) -> list[str]:
        unknown = sorted(set(assets) - set(VERIFIED_ASSETS))
        if unknown or not assets:
            raise ValueError(
                f"unknown asset(s) {', '.join(unknown) or '(none listed)'}: list some of "
                f"{', '.join(VERIFIED_ASSETS)}"
            )
        return assets

    @field_validator("end_date")
    @classmethod
    def _a_day(cls, value: str | None) -> str | None:
        if value is not None and not is_partition_key(value):
            raise ValueError(f"end_date {value!r} is not a day: write it as YYYY-MM-DD")
        return value

    def days(self, today: date) -> list[str]:
        """The partition keys to verify, oldest first."""
        end = date.fromisoformat(self.end_date) if self.end_date else today - timedelta(days=1)
        return [(end - timedelta(days=n)).isoformat() for n in reversed(range(self.last_days))]


@op(
    out=Out(Nothing),
    description="Re-reads every published partition of the chosen assets and days through its "
    "destination and records each day's export_is_intact and no_credential_leak results.",
)
def verify_published_exports(
    context: OpExecutionContext,
    config: VerifyExportsConfig,
    export_store: ExportStore,
    proxywhirl: ProxyWhirlSource,
) -> Iterator[Output[None]]:
    destination = export_store.open()
    known = known_credentials(Path(proxywhirl.database), Path(proxywhirl.config_path))
    for gap in known.gaps:
        context.log.warning(f"verify_exports_job: {gap.message()}")
    scanner = LeakScanner(known.secrets)
    wanted = set(config.days(date.today()))
    failed: list[str] = []
    verified = 0
    for asset in config.assets:
        folders = {
            name.removeprefix(PARTITION_FOLDER_PREFIX)
            for name in destination.list_folders(asset)
            if name.startswith(PARTITION_FOLDER_PREFIX)
        }
        # Days Dagster recorded as materialized must have been published.
        key = AssetKey(asset.split("/"))
        materialized = context.instance.get_materialized_partitions(key)
        for partition in sorted((folders | materialized) & wanted):
            manifest = read_manifest(destination, manifest_key(asset, partition))
            if manifest is None and partition not in materialized:
                continue  # a folder without a manifest is not published (debris, or mid-write)
            results = reread_results(destination, asset, partition, manifest, scanner, known)
            verified += 1
            if any(not r.passed and r.severity == AssetCheckSeverity.ERROR for r in results):
                failed.append(f"{asset} {partition}")
            for result in results:
                # Dagster records a check evaluation logged from any step against its asset
                # partition (its annotation lists only the older event types).
                context.log_event(as_evaluation(key, partition, result))  # type: ignore[arg-type]
    context.log.info(f"verified {verified} published partition(s); {len(failed)} failed")
    # Flushes the results logged above (a step that raises before yielding drops them).
    yield Output(None)
    if failed:
        raise Failure(
            description=f"{len(failed)} published partition(s) failed verification: "
            f"{', '.join(failed[:10])}{' ...' if len(failed) > 10 else ''}; see each asset's "
            "Checks tab, and re-export those days",
            allow_retries=False,
        )


@job(
    description="Deep verification of published exports: re-reads each partition of the chosen "
    "assets and days through its destination (sha256, bytes, rows, format, credentials).",
    tags={TEMPLATE_TAG: "verify_exports_job"},
)
def verify_exports_job() -> None:
    verify_published_exports()
