"""Writing exports: formats, codecs, destinations, the manifest and the IO manager.

The names below load on first use (PEP 562): importing one submodule, e.g.
``export_assets.exports.export`` from an asset or ``readers`` from the CLI, does not import
the IO manager and every writer behind it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value
