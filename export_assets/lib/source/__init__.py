"""Reading ProxyWhirl deployments (database, logs, config), read-only, without Dagster.

The names below load on first use (PEP 562): code that reads only the logs does not import
the database reader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from export_assets import lazy_names

if TYPE_CHECKING:
    from export_assets.lib.source.database import POOL_SCHEMA, SourceError, SourceSnapshot

_HOMES = {"POOL_SCHEMA": "database", "SourceError": "database", "SourceSnapshot": "database"}

__all__ = ["POOL_SCHEMA", "SourceError", "SourceSnapshot"]


__getattr__ = lazy_names(__name__, _HOMES)
