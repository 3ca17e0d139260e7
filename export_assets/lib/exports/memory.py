"""Where an export's Arrow memory comes from.

pyarrow allocates through mimalloc by default, which keeps the pages a thread freed for
that thread to reuse. An export's reader, formatter and compressor run on threads of
their own and pass batches between them, so freed pages pile up per thread: the 1M-row
day's csv.gz export peaked at 225 MiB that way, against 204 MiB with the C library's
allocator, at the same speed (``make bench``, target 5).
"""

from __future__ import annotations

import pyarrow as pa


def use_system_allocator() -> None:
    """Allocate Arrow memory with the C library's ``malloc`` in this process from now on
    (what was allocated before stays where it is until freed)."""
    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())
