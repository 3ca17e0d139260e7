"""Reading ProxyWhirl deployments (database, logs, config), read-only."""

from export_assets.source.database import POOL_SCHEMA, SourceError, SourceSnapshot
from export_assets.source.resource import ProxyWhirlSource

__all__ = ["POOL_SCHEMA", "ProxyWhirlSource", "SourceError", "SourceSnapshot"]
