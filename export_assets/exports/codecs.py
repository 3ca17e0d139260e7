"""Outer codecs: how a data file's bytes are compressed on their way to the destination."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from export_assets.exports.export import Compression, ExportOptions
from export_assets.exports.streams import MeasuredStream

EXTENSIONS: dict[Compression, str] = {"gzip": ".gz", "none": ""}


@contextmanager
def compressed(target: MeasuredStream, options: ExportOptions) -> Iterator[BinaryIO]:
    """A stream that compresses into ``target``; the codec's trailer is written on exit."""
    if options.compression == "none":
        yield target  # type: ignore[misc]
        return
    # mtime=0 and no file name in the header: the same rows give the same bytes.
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=target, compresslevel=options.gzip_level, mtime=0
    ) as stream:
        yield stream  # type: ignore[misc]
