"""Reading ProxyWhirl deployments (database, logs, config), read-only.

The names below load on first use (PEP 562): code that reads only the database or the logs
(the CLI, the leak scanner) does not import Dagster through ``ProxyWhirlSource``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value
