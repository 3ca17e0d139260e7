"""Where an export's Arrow memory comes from.

pyarrow allocates through mimalloc by default, which keeps the pages a thread freed for
that thread to reuse. An export's reader, formatter and compressor run on threads of
their own and pass batches between them, so freed pages pile up per thread: the 1M-row
day's csv.gz export peaked at 225 MiB that way, against 204 MiB with the C library's
allocator, at the same speed (``make bench``, target 5).
"""

from __future__ import annotations

import atexit
import ctypes
import gc

import pyarrow as pa


def use_system_allocator() -> None:
    """Allocate Arrow memory with the C library's ``malloc`` in this process from now on
    (what was allocated before stays where it is until freed)."""
    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())


def trim_heap() -> None:
    """Hand the C library's free heap pages back to the system (``malloc_trim``), in every
    arena: glibc keeps what a library freed for reuse, and a one-off peak (a compiler's
    working memory) would otherwise stay in the process's RSS. A no-op elsewhere."""
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc
        return
    malloc_trim(0)


_FREEZE_AT_EXIT: list[bool] = []


def skip_the_final_collection() -> None:
    """Let this process end without the interpreter's last garbage collection.

    On the way out, CPython walks every object still alive (a process that ran a Dagster
    step holds some 200,000) to free the ones in reference cycles, memory the system is
    about to take back whole: 0.8 s of the 1M-row day's ``materialize()``, as long as its
    leak scan. Freezing the heap in an ``atexit`` handler (``gc.freeze``: the collector
    skips frozen objects) ends the process in 0.1 s. Files, sockets and databases are
    closed as before (by reference counting, or by the system); only the finalizers of
    objects in cycles do not run, which Python never promises at exit. Registered by the
    first export a process writes (idempotent), not by importing the package.
    """
    if not _FREEZE_AT_EXIT:
        _FREEZE_AT_EXIT.append(True)
        atexit.register(gc.freeze)
