"""Finding and opening the log files of ProxyWhirl's log folder, and refusing the names that
are not safe to read.

A name is a log file's when it is the live ``NAME.log``, loguru's rotated
``NAME.<created>.log``, logrotate's ``NAME.log.1``, or one of these compressed (``.gz``,
``.bz2``, ``.xz``, ``.lzma``, ``.zip``, ``.tar[.gz|.bz2|.xz]``); every other name is ignored.
While loguru compresses a rotated file both it and its archive exist: only the (whole)
uncompressed one is read.

Whoever can write to the log folder is trusted with nothing but its log files. Only regular
files are opened, with ``O_NOFOLLOW | O_NONBLOCK`` and checked with ``fstat`` after the
listing's ``lstat``: a symbolic link is never followed, a FIFO, socket, device or directory
with a log file's name never opened (a FIFO would block the open forever), a file gone
between listing and opening (rotated) is counted; all are *refused* (``RefusedLogFile``),
with why and what to do, never fatal for the other files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from export_assets.lib.source.database import SourceError

RefusalReason = Literal["symlink", "not_regular", "vanished", "too_large", "ratio"]


@dataclass(frozen=True)
class RefusedLogFile:
    """A name of the log folder that looks like a log file but was not read (or not used)."""

    name: str
    reason: RefusalReason
    why: str
    fix: str

    def facts(self) -> dict[str, str]:
        """The refusal for the manifest and metadata."""
        return {"name": self.name, "reason": self.reason, "why": self.why, "fix": self.fix}


Kind = Literal["plain", "gzip", "bz2", "xz", "zip", "tar"]
"""How a log file is compressed (``tar``: an archive, itself maybe compressed)."""

IgnoredName = dict[str, str]
"""A name of the log folder that was not read: ``{"name": ..., "why": ...}``."""


@dataclass
class LogFile:
    """A regular file of the log folder, opened without following a link; the caller
    closes ``raw``."""

    path: Path
    raw: BinaryIO
    kind: Kind
    size: int  # on disk, when opened


# NAME.log, NAME.<anything>.log, NAME.log.3 (logrotate), then an optional compression suffix.
_LOG_NAME = re.compile(
    r"^.+\.log(?:\.[0-9]+)?(?P<suffix>\.gz|\.bz2|\.xz|\.lzma|\.zip|\.tar|\.tar\.gz|\.tgz"
    r"|\.tar\.bz2|\.tar\.xz)?$"
)
_KINDS: dict[str | None, Kind] = {  # by compression suffix
    None: "plain",
    ".gz": "gzip",
    ".bz2": "bz2",
    ".xz": "xz",
    ".lzma": "xz",
    ".zip": "zip",
    ".tar": "tar",
    ".tar.gz": "tar",
    ".tgz": "tar",
    ".tar.bz2": "tar",
    ".tar.xz": "tar",
}
_TAR_CODECS: dict[str, Kind] = {  # the codec around a tar archive, by suffix
    ".tar": "plain",
    ".tar.gz": "gzip",
    ".tgz": "gzip",
    ".tar.bz2": "bz2",
    ".tar.xz": "xz",
}


def tar_codec(name: str) -> Kind:
    """The compression around a tar archive named ``name`` (``plain`` for a bare ``.tar``)."""
    match = _LOG_NAME.match(name)
    return _TAR_CODECS[match["suffix"] if match is not None else ".tar"]


def open_log_files(log_dir: Path) -> Iterator[LogFile | RefusedLogFile | IgnoredName]:
    """Every name of ``log_dir`` in name order: a log file opened, refused or ignored.

    The folder is listed now (a missing or unlistable folder is a ``SourceError``), each
    file opened only when the iteration reaches it: the caller reads it before the next is
    opened, and closes the files it was given.
    """
    if not log_dir.is_dir():
        what = "is not a folder" if log_dir.exists() else "does not exist"
        raise SourceError(
            f"ProxyWhirl log folder {log_dir} {what}: set PROXYWHIRL_LOG_DIR to the folder of "
            "ProxyWhirl's JSON logs (the sink of configure_logging(format='json'))"
        )
    try:
        with os.scandir(log_dir) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as error:
        raise SourceError(
            f"cannot list ProxyWhirl log folder {log_dir}: {error.strerror or error}"
        ) from None
    return _opened(log_dir, entries)


def _opened(
    log_dir: Path, entries: list[os.DirEntry[str]]
) -> Iterator[LogFile | RefusedLogFile | IgnoredName]:
    kinds = {
        entry.name: (_KINDS[match["suffix"]], match["suffix"])
        for entry in entries
        if (match := _LOG_NAME.match(entry.name)) is not None
    }
    # Types as listed (lstat: a link is a link); the file opened is checked again.
    types = {entry.name: _entry_type(entry) for entry in entries if entry.name in kinds}
    vanished: set[str] = set()
    for entry in entries:
        name = entry.name
        if name not in kinds:
            yield {"name": name, "why": "not a log file"}
            continue
        kind, suffix = kinds[name]
        source = None if suffix is None else name.removesuffix(suffix)
        if source in types and types[source] == "" and source not in vanished:
            # Loguru compresses a rotated file next to it, then deletes it: until then
            # the uncompressed one is whole and the archive may not be. (If it is gone
            # already, the archive is complete: read that.)
            yield {"name": name, "why": f"being compressed from {source}"}
            continue
        opened = (
            _open_log_file(log_dir / name, kind)
            if types[name] == ""
            else _refuse_type(log_dir / name, types[name])
        )
        if isinstance(opened, RefusedLogFile) and opened.reason == "vanished":
            vanished.add(name)
        yield opened


def _entry_type(entry: os.DirEntry[str]) -> str:
    """What a listed name is, without following a link: "" for a regular file, "vanished"."""
    try:
        mode = entry.stat(follow_symlinks=False).st_mode
    except FileNotFoundError:
        return "vanished"
    except OSError:
        return ""  # let opening it say what is wrong
    return "" if stat.S_ISREG(mode) else _file_type(mode)


def _file_type(mode: int) -> str:
    kinds = (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((what for test, what in kinds if test(mode)), "not a regular file")


def _open_log_file(path: Path, kind: Kind) -> LogFile | RefusedLogFile:
    """Open a regular file of the folder, or say why not. O_NOFOLLOW: a link swapped in
    since the listing is not followed; O_NONBLOCK: nor does a FIFO block the open."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        return _refuse_type(path, "vanished")
    except OSError as error:
        if error.errno == errno.ELOOP:
            return _refuse_type(path, "a symbolic link")
        if error.errno == errno.ENXIO:  # what opening a socket gives
            return _refuse_type(path, "a socket")
        raise SourceError(
            f"cannot read ProxyWhirl log file {path}: {error.strerror or error}"
        ) from None
    try:
        status = os.fstat(descriptor)
        if stat.S_ISREG(status.st_mode):
            os.set_blocking(descriptor, True)
            raw = os.fdopen(descriptor, "rb")  # owns the descriptor from here
            return LogFile(path, raw, kind, status.st_size)
    except BaseException:
        os.close(descriptor)
        raise
    os.close(descriptor)
    return _refuse_type(path, _file_type(status.st_mode))


def _refuse_type(path: Path, what: str) -> RefusedLogFile:
    """The refusal of a name that is not a regular file (``what`` it is), or is gone."""
    if what == "vanished":
        return RefusedLogFile(
            path.name,
            "vanished",
            "disappeared between the folder's listing and its opening (rotated, compressed "
            "or deleted meanwhile)",
            "if it held records of this day, export the partition again",
        )
    if what == "a symbolic link":
        with contextlib.suppress(OSError):
            what = f"a symbolic link to {os.readlink(path)}"
        return RefusedLogFile(
            path.name,
            "symlink",
            f"{what}, not followed: logs are read only from regular files in the log folder",
            "if it is a genuine ProxyWhirl log, move or copy the file itself into the folder",
        )
    return RefusedLogFile(
        path.name,
        "not_regular",
        f"{what}, not a regular file: not opened",
        "remove it from the log folder, or rename it so that it does not end like a log "
        "file (.log, .log.gz, ...)",
    )
