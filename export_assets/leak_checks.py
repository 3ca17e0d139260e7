"""``no_credential_leak``: the blocking check that scans what an export published for secrets."""
# No "from __future__ import annotations": Dagster reads the check's resource annotations.

from collections.abc import Sequence
from pathlib import Path

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetsDefinition,
    MetadataValue,
    asset_check,
    serialize_value,
)

from export_assets.exports.io_manager import read_manifest
from export_assets.exports.manifest import manifest_key, partition_folder
from export_assets.exports.store import ExportStore
from export_assets.leaks import Finding, LeakScanner, known_credentials
from export_assets.partitions import daily_partitions
from export_assets.source import ProxyWhirlSource

MAX_FINDINGS_SHOWN = 20


def leak_checks(assets: Sequence[AssetsDefinition]) -> list[AssetChecksDefinition]:
    """One ``no_credential_leak`` check per export asset (or report asset)."""
    return [_no_credential_leak(asset) for asset in assets]


def _no_credential_leak(asset: AssetsDefinition) -> AssetChecksDefinition:
    @asset_check(
        asset=asset,
        name="no_credential_leak",
        blocking=True,
        partitions_def=asset.partitions_def or daily_partitions,
        description=(
            "Streams every file of the partition (and its manifest, and this run's event log "
            "and metadata) looking for any credential the ProxyWhirl database or config holds, "
            "and for scheme://user:pass@. Fails on a finding, naming file and line, secret masked."
        ),
    )
    def no_credential_leak(
        context: AssetCheckExecutionContext, export_store: ExportStore, proxywhirl: ProxyWhirlSource
    ) -> AssetCheckResult:
        name = asset.key.path[-1]
        partition = context.partition_key
        known = known_credentials(Path(proxywhirl.database), Path(proxywhirl.config_path))
        scanner = LeakScanner(known.secrets)
        destination = export_store.open()
        findings: list[Finding] = []
        manifest = read_manifest(destination, manifest_key(name, partition))
        if manifest is None:
            findings.append(Finding(f"{name} {partition}", "-", "no manifest to scan"))
        else:
            folder = partition_folder(name, partition)
            for entry in manifest.files:
                key = f"{folder}/{entry.path}"
                with destination.open_read(key) as stream:
                    findings += scanner.scan_stream(key, stream)
            for number, line in enumerate(manifest.to_json().decode().splitlines(), start=1):
                findings += [
                    Finding(manifest_key(name, partition), str(number), what)
                    for what in scanner.scan_text(line)
                ]
        # The run's own record: log messages, step events, materialization metadata.
        for entry in context.instance.all_logs(context.run.run_id):
            text = serialize_value(entry)
            findings += [
                Finding(
                    f"run {context.run.run_id} event log", _kind(entry.dagster_event_type), what
                )
                for what in scanner.scan_text(text)
            ]
        shown = [str(finding) for finding in findings[:MAX_FINDINGS_SHOWN]]
        if len(findings) > MAX_FINDINGS_SHOWN:
            shown.append(f"... and {len(findings) - MAX_FINDINGS_SHOWN} more")
        return AssetCheckResult(
            passed=not findings,
            metadata={
                "findings": MetadataValue.int(len(findings)),
                "known_credentials": MetadataValue.int(len(known.secrets)),
                "details": MetadataValue.md("\n".join(f"- {s}" for s in shown) or "none"),
                "notes": MetadataValue.md("\n".join(f"- {n}" for n in known.notes) or "none"),
            },
        )

    return no_credential_leak


def _kind(event_type: object) -> str:
    return str(getattr(event_type, "value", event_type or "log message"))
