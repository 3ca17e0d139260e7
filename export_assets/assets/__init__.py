"""One module per export domain."""

from export_assets.assets.pool_config import pool_config
from export_assets.assets.proxy_changes import proxy_changes
from export_assets.assets.proxy_list import proxy_list
from export_assets.assets.proxy_logs import proxy_logs

EXPORT_ASSETS = [proxy_list, proxy_changes, proxy_logs, pool_config]
"""Every daily export asset, in the order the UI lists them."""

__all__ = ["EXPORT_ASSETS", "pool_config", "proxy_changes", "proxy_list", "proxy_logs"]
