"""Writing exports: formats, codecs, destinations, the manifest and the IO manager.

The names below load on first use (PEP 562): importing one submodule, e.g.
``export_assets.exports.export`` from an asset or ``readers`` from the CLI, does not import
the IO manager and every writer behind it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from export_assets import lazy_names

if TYPE_CHECKING:
    from export_assets.exports.export import Export, ExportConfig, ExportOptions
    from export_assets.exports.io_manager import ExportIOManager
    from export_assets.exports.manifest import ExportManifest
    from export_assets.exports.store import ExportStore

_HOMES = {
    "Export": "export",
    "ExportConfig": "export",
    "ExportOptions": "export",
    "ExportIOManager": "io_manager",
    "ExportManifest": "manifest",
    "ExportStore": "store",
}

__all__ = [
    "Export",
    "ExportConfig",
    "ExportIOManager",
    "ExportManifest",
    "ExportOptions",
    "ExportStore",
]


__getattr__ = lazy_names(__name__, _HOMES)
