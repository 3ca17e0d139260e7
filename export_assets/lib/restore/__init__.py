"""Restoring a ProxyWhirl deployment from verified exports: pools into proxies.db, configs."""

from export_assets.lib.restore.verify import RestoreError, VerifiedExport, verify_export

__all__ = ["RestoreError", "VerifiedExport", "verify_export"]
