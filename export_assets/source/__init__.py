"""Reading ProxyWhirl deployments (database, logs, config), read-only.

The names below load on first use (PEP 562): code that reads only the database or the logs
(the CLI, the leak scanner) does not import Dagster through ``ProxyWhirlSource``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from export_assets import lazy_names

if TYPE_CHECKING:
    from export_assets.source.database import POOL_SCHEMA, SourceError, SourceSnapshot
    from export_assets.source.resource import ProxyWhirlSource

_HOMES = {
    "POOL_SCHEMA": "database",
    "SourceError": "database",
    "SourceSnapshot": "database",
    "ProxyWhirlSource": "resource",
}

__all__ = ["POOL_SCHEMA", "ProxyWhirlSource", "SourceError", "SourceSnapshot"]


__getattr__ = lazy_names(__name__, _HOMES)
