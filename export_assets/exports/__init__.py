"""Writing exports: formats, codecs, destinations, the manifest and the IO manager."""

from export_assets.exports.export import Export, ExportConfig, ExportOptions
from export_assets.exports.io_manager import ExportIOManager
from export_assets.exports.manifest import ExportManifest

__all__ = ["Export", "ExportConfig", "ExportIOManager", "ExportManifest", "ExportOptions"]
