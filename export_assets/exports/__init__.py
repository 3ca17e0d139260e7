"""Writing exports: formats, codecs, destinations, the manifest and the IO manager."""

from export_assets.exports.export import Export, ExportConfig, ExportOptions
from export_assets.exports.io_manager import ExportIOManager
from export_assets.exports.manifest import ExportManifest
from export_assets.exports.store import ExportStore

__all__ = ["Export", "ExportConfig", "ExportIOManager", "ExportManifest", "ExportOptions", "ExportStore"]
