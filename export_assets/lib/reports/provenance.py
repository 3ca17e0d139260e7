"""Which ``proxy_metrics`` exports a report's days have, read from their published manifests.

A report records the sha256 of each day's ``proxy_metrics`` manifest, so a reader can tell
which exports it agrees with. Its figures come from the same source snapshot for every day:
a day without an export is computed from the source all the same, and the report says so;
an export whose highest validation id differs from the source's is marked stale.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date

from export_assets.lib.exports.destinations import Destination
from export_assets.lib.exports.manifest import ExportManifest, manifest_key, sha256_hex
from export_assets.lib.source.database import SourceSnapshot
from export_assets.lib.source.validations import validation_id_range

METRICS_ASSET = "proxy_metrics"
EXPORTED = "exported"
MISSING = "no export: computed from the source"
STALE = "export predates the source's checks: computed from the source"


@dataclass(frozen=True)
class MetricsExport:
    """One day's ``proxy_metrics`` export as the report found it."""

    day: date
    manifest_sha256: str | None
    status: str


def metrics_exports(
    destination: Destination, snapshot: SourceSnapshot, days: list[date]
) -> list[MetricsExport]:
    """The ``proxy_metrics`` manifest of each day, if published, checked against the source."""
    found = []
    for day in days:
        data = destination.read_bytes(manifest_key(METRICS_ASSET, day.isoformat()))
        if data is None:
            found.append(MetricsExport(day, None, MISSING))
            continue
        manifest = ExportManifest.from_json(data)
        ids = validation_id_range(snapshot, day)
        current = None if ids is None else ids[1]
        exported = manifest.source.get("validation_results_max_id")
        found.append(
            MetricsExport(day, sha256_hex(data), EXPORTED if exported == current else STALE)
        )
    return found


def combined_digest(exports: list[MetricsExport]) -> str:
    """One sha256 over the days' manifest digests (``day sha256`` lines; ``-`` when none)."""
    lines = "".join(f"{e.day.isoformat()} {e.manifest_sha256 or '-'}\n" for e in exports)
    return hashlib.sha256(lines.encode()).hexdigest()
