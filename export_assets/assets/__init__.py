"""One module per export domain."""

from export_assets.assets.proxy_list import proxy_list

__all__ = ["proxy_list"]
