"""export_assets: governed, incremental exports of ProxyWhirl deployments, on Dagster."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any

# Arrow memory from the C library's malloc from the first allocation on, as exports switch
# to when they start (``lib/exports/memory.py``): pyarrow reads this when it first needs its
# default pool, so it is set before anything of this package imports pyarrow. Allocations
# made in mimalloc before the switch kept ~3 MiB of the 1M-row export's peak RSS. A value
# the environment sets is kept.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


def lazy_names(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A package's ``__getattr__`` (PEP 562) that imports each name from its submodule on
    first use: ``homes`` maps a name to the submodule that defines it."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{home}"), name)
        namespace[name] = value  # later look-ups skip this function
        return value

    return __getattr__
