"""Where exports are published. Keys are '/'-separated paths under the destination's root."""

from __future__ import annotations

import errno
import os
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO


class DestinationError(Exception):
    """The destination could not be written or read; nothing was published."""


class Destination(ABC):
    """A place files are published to atomically: readers never see a partial file."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """A URI naming ``key`` for people and tools (``file://...``, ``s3://...``)."""

    @abstractmethod
    @contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        """A stream whose bytes become ``key`` when the block exits without error.

        On error nothing is published and nothing is left behind.
        """

    @abstractmethod
    def read_bytes(self, key: str) -> bytes | None:
        """The bytes of ``key``, or None when it does not exist."""

    @abstractmethod
    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        """A stream of ``key``'s bytes, read as they come (for files too big for memory).

        Raises FileNotFoundError naming the key when it does not exist.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` if it exists."""

    @abstractmethod
    def list_folders(self, prefix: str) -> list[str]:
        """Names of the folders directly under ``prefix``."""

    @abstractmethod
    def remove_debris(self, folder: str, older_than: timedelta) -> list[str]:
        """Remove what killed writers left in ``folder`` before ``older_than`` ago.

        A write that fails cleans up after itself; only a killed process leaves temporary
        files or incomplete uploads. Returns what was removed.
        """

    def write_bytes(self, key: str, data: bytes) -> None:
        """Publish ``data`` as ``key`` atomically."""
        with self.open_write(key) as stream:
            stream.write(data)


class LocalDestination(Destination):
    """A directory on local disk; files appear by rename from a temporary name."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        """The file that holds ``key``."""
        return self.root.joinpath(*key.split("/"))

    def uri(self, key: str) -> str:
        return self.path(key).resolve().as_uri()

    @contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        final = self.path(key)
        created = self._make_parents(final.parent)
        temporary = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(temporary, "xb") as stream:
                yield stream
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, final)
            _fsync_dir(final.parent)
        except BaseException as exc:
            temporary.unlink(missing_ok=True)
            for folder in created:  # innermost first; only folders this write made
                try:
                    folder.rmdir()
                except OSError:
                    break
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise DestinationError(
                    f"no space left on the device of {self.root} while writing {key}: free "
                    "space or set EXPORT_DESTINATION elsewhere; nothing was published and the "
                    "previous export is intact"
                ) from exc
            if isinstance(exc, PermissionError):
                raise DestinationError(
                    f"cannot write {final} ({exc.strerror}): give the exporter write access or "
                    "set EXPORT_DESTINATION elsewhere"
                ) from exc
            raise

    def _make_parents(self, folder: Path) -> list[Path]:
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            try:
                path.mkdir()
            except FileExistsError:
                pass  # a concurrent export of another partition made it
            except OSError as exc:
                raise DestinationError(f"cannot create export folder {path}: {exc}") from exc
        return missing

    def read_bytes(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        with open(self.path(key), "rb") as stream:
            yield stream

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def remove_debris(self, folder: str, older_than: timedelta) -> list[str]:
        directory = self.path(folder)
        if not directory.is_dir():
            return []
        cutoff = time.time() - older_than.total_seconds()
        removed = []
        for leftover in directory.glob(".*.tmp"):
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink(missing_ok=True)
                removed.append(f"{folder}/{leftover.name}")
        return removed

    def list_folders(self, prefix: str) -> list[str]:
        folder = self.path(prefix.rstrip("/"))
        if not folder.is_dir():
            return []
        return sorted(entry.name for entry in folder.iterdir() if entry.is_dir())


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
