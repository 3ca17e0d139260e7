"""Write-only byte streams that measure what passes through them."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from typing import BinaryIO


class MeasuredStream(io.RawIOBase):
    """Forwards writes to ``target`` counting bytes and, if asked, hashing them (sha256).

    Closing it does not close ``target``: the layer that opened a stream closes it.
    """

    def __init__(self, target: BinaryIO | io.RawIOBase, *, hashed: bool = False) -> None:
        super().__init__()
        self._target = target
        self._sha256 = hashlib.sha256() if hashed else None
        self.bytes = 0
        # Called with every write, after the target took it (a scan of what goes out).
        self.tap: Callable[[memoryview], None] | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data)
        self._target.write(view)
        if self._sha256 is not None:
            self._sha256.update(view)
        self.bytes += view.nbytes
        if self.tap is not None:
            self.tap(view)
        return view.nbytes

    @property
    def sha256(self) -> str:
        """Hex sha256 of everything written so far."""
        if self._sha256 is None:
            raise ValueError("this stream was opened without hashing")
        return self._sha256.hexdigest()
