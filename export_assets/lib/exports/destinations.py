"""Where exports are published. Keys are '/'-separated paths under the destination's root."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import stat
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

# Temporary files and multipart uploads older than this can only be a killed run's.
DEBRIS_AGE = timedelta(hours=6)


class DestinationError(Exception):
    """The destination could not be written or read; nothing was published."""


class UnsafePathError(ValueError):
    """A path taken from a manifest, a config or a partition key would leave the destination.

    Raised before anything is read, written or deleted.
    """


_KEY_RULES = (
    "paths under an export destination are '/'-separated plain names: no '..' or '.' parts, "
    "no empty or absolute parts, no backslashes or NUL"
)
# What a killed local write leaves: ``.{name}.{hex}.tmp`` (see ``open_write``).
TEMPORARY_NAME = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8,32}\.tmp")


def key_parts(key: str) -> list[str]:
    """The '/'-separated parts of ``key``, each a plain name; refuses anything that could
    name a file outside the destination's root."""
    if not isinstance(key, str) or not key:
        raise UnsafePathError(f"{key!r} is refused as an export path: it is empty; {_KEY_RULES}")
    parts = key.split("/")
    for part in parts:
        reason = _unsafe_part(part)
        if reason is not None:
            raise UnsafePathError(f"{key!r} is refused as an export path: {reason}; {_KEY_RULES}")
    return parts


def _unsafe_part(part: str) -> str | None:
    if part == "":
        return "it has an empty or absolute part"
    if part in {".", ".."}:
        return f"it has a {part!r} part"
    if "\\" in part:
        return "it has a backslash"
    if "\0" in part:
        return "it has a NUL character"
    return None


def check_file_name(name: object, what: str) -> str:
    """``name`` if it is one plain file name (no separator, '..', NUL or leading '.')."""
    if not isinstance(name, str) or not name:
        raise UnsafePathError(f"{what} {name!r} is not a file name")
    if "/" in name or "\\" in name or "\0" in name or name.startswith("."):
        raise UnsafePathError(
            f"{what} {name!r} is refused: a file name has no '/', backslash, NUL or leading "
            "'.' (it must name a file in the partition folder itself)"
        )
    return name


def content_version(data: bytes) -> str:
    """The version of a local file for compare-and-swap: the sha256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


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
    def remove_debris(
        self, folder: str, older_than: timedelta, *, dry_run: bool = False
    ) -> list[str]:
        """Remove what killed writers left in ``folder`` before ``older_than`` ago.

        A write that fails cleans up after itself; only a killed process leaves temporary
        files or incomplete uploads. Returns what was removed (or, ``dry_run``, would be).
        """

    def write_bytes(self, key: str, data: bytes) -> None:
        """Publish ``data`` as ``key`` atomically."""
        with self.open_write(key) as stream:
            stream.write(data)

    # Compare-and-swap, for the partition lease and the manifest. A version is an opaque
    # string: the ETag on S3, the sha256 of the bytes on disk.

    @abstractmethod
    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        """The bytes of ``key`` and their version, or None when it does not exist."""

    @abstractmethod
    def replace_if(self, key: str, data: bytes, expected: str | None) -> str | None:
        """Publish small ``data`` as ``key`` only if ``key`` is still at version ``expected``
        (absent when None), atomically; the new version, or None when the check failed."""

    @abstractmethod
    def delete_if(self, key: str, expected: str) -> bool:
        """Delete ``key`` only if it is still at version ``expected``; whether it was."""

    @abstractmethod
    def size_of(self, key: str) -> int | None:
        """Bytes of ``key`` (a regular file or object), or None when there is none."""

    @abstractmethod
    def list_files(self, folder: str) -> list[str]:
        """Names of the files (objects) directly in ``folder``, hidden ones too."""

    @abstractmethod
    def keep_copy(self, key: str) -> str | None:
        """Copy ``key`` (if it exists) to a hidden temporary key beside it; that key.

        Used before a file is replaced in place, so a run that fails before its manifest is
        published can put the previous version back (``put_back``). A copy a killed run
        leaves is debris, removed after ``DEBRIS_AGE``.
        """

    @abstractmethod
    def put_back(self, copy: str, key: str) -> None:
        """Move the copy made by ``keep_copy`` back to ``key``."""

    def prune(self, folder: str) -> None:  # noqa: B027 (a no-op where there are no folders)
        """Remove ``folder`` if it is empty (on disk; S3 has no folders)."""


class LocalDestination(Destination):
    """A directory on local disk; files appear by rename from a temporary name."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        """The file that holds ``key``, checked to lie under the root.

        The folders on the way are resolved (symlinks followed) and must stay under the
        resolved root: a ``dt=...`` folder that links elsewhere is refused, so nothing
        outside the destination is ever written, read or deleted through it.
        """
        parts = key_parts(key)
        path = self.root.joinpath(*parts)
        self._confine(path.parent, key)
        return path

    def _confine(self, path: Path, key: str) -> Path:
        root = self.root.resolve()
        real = path.resolve()
        if real != root and not real.is_relative_to(root):
            raise UnsafePathError(
                f"{key!r} is refused: {path} resolves to {real}, outside the export "
                f"destination {root} (a symlink leads out of it); remove the link or move "
                "the data under the destination"
            )
        return real

    def _readable(self, key: str) -> Path:
        """``path(key)``, and the file itself, if a symlink, must also stay under the root."""
        path = self.path(key)
        if path.is_symlink():
            self._confine(path, key)
        return path

    def real_path(self, key: str) -> Path:
        """The resolved file of ``key`` (symlinks followed), refused if outside the root."""
        return self._confine(self.path(key), key)

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
            _remove_empty(created)  # innermost first; only folders this write made
            if isinstance(exc, OSError):
                error = self._write_error(exc, key, final)
                if error is not exc:
                    raise error from exc
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
            return self._readable(key).read_bytes()
        except FileNotFoundError:
            return None

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        with open(self._readable(key), "rb") as stream:
            yield stream

    def delete(self, key: str) -> None:
        # The folders were resolved and confined; unlinking a symlink removes the link only.
        self.path(key).unlink(missing_ok=True)

    def keep_copy(self, key: str) -> str | None:
        final = self.path(key)
        copy = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        try:
            os.link(final, copy)  # a second name for the same bytes: instant, no space
        except FileNotFoundError:
            return None
        return key.rsplit("/", 1)[0] + "/" + copy.name if "/" in key else copy.name

    def put_back(self, copy: str, key: str) -> None:
        kept, final = self.path(copy), self.path(key)
        if final.exists() and os.path.samefile(kept, final):
            kept.unlink()  # never replaced (rename between two links of one file is a no-op)
            return
        os.replace(kept, final)
        _fsync_dir(final.parent)

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        data = self.read_bytes(key)
        return None if data is None else (data, content_version(data))

    def replace_if(self, key: str, data: bytes, expected: str | None) -> str | None:
        final = self.path(key)
        for attempt in range(3):
            created = self._make_parents(final.parent)
            try:
                return self._replace_if(key, final, data, expected)
            except FileNotFoundError:
                if attempt == 2:
                    raise
                # Another run pruned the empty folder between its creation and our lock.
            except OSError as exc:
                _remove_empty(created)
                raise self._write_error(exc, key, final) from exc
        raise AssertionError("unreachable")

    def _replace_if(self, key: str, final: Path, data: bytes, expected: str | None) -> str | None:
        with folder_lock(final.parent):
            current = self.read_versioned(key)
            if (None if current is None else current[1]) != expected:
                return None
            temporary = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
            try:
                with open(temporary, "xb") as stream:
                    stream.write(data)
                    stream.flush()
                    os.fsync(stream.fileno())
                os.replace(temporary, final)
            finally:
                temporary.unlink(missing_ok=True)
            _fsync_dir(final.parent)
            return content_version(data)

    def delete_if(self, key: str, expected: str) -> bool:
        final = self.path(key)
        if not final.parent.is_dir():
            return False
        with folder_lock(final.parent):
            current = self.read_versioned(key)
            if current is None or current[1] != expected:
                return False
            final.unlink()
        return True

    def prune(self, folder: str) -> None:
        with contextlib.suppress(OSError):  # not empty, or already gone
            self.path(folder).rmdir()

    def size_of(self, key: str) -> int | None:
        try:
            status = self.path(key).lstat()
        except FileNotFoundError:
            return None
        return status.st_size if _is_regular(status.st_mode) else None

    def list_files(self, folder: str) -> list[str]:
        directory = self.path(folder) if folder else self.root
        if folder:
            self._confine(directory, folder)
        if not directory.is_dir():
            return []
        return sorted(entry.name for entry in directory.iterdir() if entry.is_file())

    def remove_debris(
        self, folder: str, older_than: timedelta, *, dry_run: bool = False
    ) -> list[str]:
        directory = self.path(folder)
        self._confine(directory, folder)
        if not directory.is_dir():
            return []
        cutoff = time.time() - older_than.total_seconds()
        removed = []
        for leftover in directory.iterdir():
            if not TEMPORARY_NAME.fullmatch(leftover.name):
                continue
            status = leftover.lstat()  # a symlink is not ours: never followed, never removed
            if _is_regular(status.st_mode) and status.st_mtime < cutoff:
                if not dry_run:
                    leftover.unlink(missing_ok=True)
                removed.append(f"{folder}/{leftover.name}")
        return sorted(removed)

    def list_folders(self, prefix: str) -> list[str]:
        prefix = prefix.rstrip("/")
        folder = self.path(prefix) if prefix else self.root
        if prefix:
            self._confine(folder, prefix)
        if not folder.is_dir():
            return []
        return sorted(entry.name for entry in folder.iterdir() if entry.is_dir())

    def _write_error(self, exc: OSError, key: str, final: Path) -> Exception:
        if exc.errno == errno.ENOSPC:
            return DestinationError(
                f"no space left on the device of {self.root} while writing {key}: free "
                "space or set EXPORT_DESTINATION elsewhere; nothing was published and the "
                "previous export is intact"
            )
        if isinstance(exc, PermissionError):
            return DestinationError(
                f"cannot write {final} ({exc.strerror}): give the exporter write access or "
                "set EXPORT_DESTINATION elsewhere"
            )
        return exc


def _is_regular(mode: int) -> bool:
    return stat.S_ISREG(mode)


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (innermost first) that a write created, while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (here: for one compare-and-swap).

    ``flock`` locks an open file description, so it excludes other threads of this process
    as well as other processes, and the kernel drops it when a holder dies.
    """
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
