"""``no_credential_leak``: the blocking check that scans what an export published for secrets.

A finding fails it with ERROR severity, which blocks (the step fails, nothing downstream
runs). A scan that could not look for every credential's clear text (stored credentials
that do not decrypt: key unset, malformed or another deployment's) is not a pass either:
the check fails with WARN severity, which Dagster does not block on, and the run log says
so at WARNING with the variable, the count and the fix.
"""
# No "from __future__ import annotations": Dagster reads the check's resource annotations.

from collections.abc import Sequence
from pathlib import Path

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetsDefinition,
    MetadataValue,
    asset_check,
    serialize_value,
)

from export_assets.exports.io_manager import read_manifest
from export_assets.exports.manifest import manifest_key, partition_folder
from export_assets.exports.store import ExportStore
from export_assets.leaks import Finding, KnownCredentials, LeakScanner, known_credentials
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
            "and for scheme://user:pass@. Fails on a finding, naming file and line, secret masked "
            "(ERROR: blocks). Warns (WARN severity, does not block) when stored credentials "
            "cannot be decrypted, so their clear text could not be looked for."
        ),
    )
    def no_credential_leak(
        context: AssetCheckExecutionContext, export_store: ExportStore, proxywhirl: ProxyWhirlSource
    ) -> AssetCheckResult:
        name = asset.key.path[-1]
        partition = context.partition_key
        known = known_credentials(Path(proxywhirl.database), Path(proxywhirl.config_path))
        for gap in known.gaps:
            context.log.warning(f"no_credential_leak on {name} {partition}: {gap.message()}")
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
        notes = known.notes + [gap.message() for gap in known.gaps]
        # A leak blocks; an incomplete scan warns (WARN failures do not block downstream).
        incomplete_only = bool(known.gaps) and not findings
        return AssetCheckResult(
            passed=not findings and not known.gaps,
            severity=AssetCheckSeverity.WARN if incomplete_only else AssetCheckSeverity.ERROR,
            description=_description(len(findings), known),
            metadata={
                "findings": MetadataValue.int(len(findings)),
                "known_credentials": MetadataValue.int(len(known.secrets)),
                "undecrypted_credentials": MetadataValue.int(known.undecrypted),
                "details": MetadataValue.md("\n".join(f"- {s}" for s in shown) or "none"),
                "notes": MetadataValue.md("\n".join(f"- {n}" for n in notes) or "none"),
            },
        )

    return no_credential_leak


def _description(findings: int, known: KnownCredentials) -> str:
    """One line on the result: findings first, then what could not be looked for."""
    parts = [f"{findings} finding(s)" if findings else "no leak found"]
    parts += [
        f"but {gap.count} stored {gap.source} credential(s) could not be decrypted "
        f"({gap.problem}): their clear text was not looked for; set {gap.variable}"
        for gap in known.gaps
    ]
    return "; ".join(parts)


def _kind(event_type: object) -> str:
    return str(getattr(event_type, "value", event_type or "log message"))
