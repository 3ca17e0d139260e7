"""Writing exports without Dagster: formats, codecs, destinations, leases and the manifest.

The names below load on first use (PEP 562): importing one submodule, e.g.
``export_assets.lib.exports.readers`` from the CLI, does not import every writer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from export_assets import lazy_names

if TYPE_CHECKING:
    from export_assets.lib.exports.export import Export, ExportOptions
    from export_assets.lib.exports.manifest import ExportManifest

_HOMES = {"Export": "export", "ExportOptions": "export", "ExportManifest": "manifest"}

__all__ = ["Export", "ExportManifest", "ExportOptions"]


__getattr__ = lazy_names(__name__, _HOMES)
