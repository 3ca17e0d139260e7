"""Keeping proxy credentials out of exports: masking ``user:pass@`` in URLs."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from export_assets.lib.source.arrays import text_offsets

MASK = "***:***"

# scheme:// then everything up to the last '@' of the same whitespace-free run. Greedy on
# purpose: a password holding '@' or '/' must not leave a tail behind; over-masking a
# malformed URL is the safe failure.
_USERINFO = r"([A-Za-z][A-Za-z0-9+.\-]*://)[^\s]*@"
_USERINFO_PY = re.compile(_USERINFO)


def mask_url_credentials(text: str) -> str:
    """Replace the ``user:pass`` of every URL in ``text`` with ``***:***``."""
    return _USERINFO_PY.sub(lambda match: f"{match.group(1)}{MASK}@", text)


def mask_url_credentials_array(values: pa.Array) -> pa.Array:
    """``mask_url_credentials`` over a string array (nulls stay null).

    The expression runs only on values holding an ``@`` (the pattern needs one), found by a
    byte search of the array's data rather than a substring search per value; and the
    array comes back as it was when masking changed none of them (ProxyWhirl's own messages
    are masked already), without a copy.
    """
    rows = _rows_holding_at(values)
    if rows is None:  # not a plain string array: ask each value
        holds_at = pc.and_kleene(pc.is_valid(values), pc.match_substring(values, "@"))
        if not pc.any(holds_at).as_py():
            return values
        picked = values.filter(holds_at)
    elif not len(rows):
        return values
    else:
        picked = values.take(
            pa.Array.from_buffers(pa.int64(), len(rows), [None, pa.py_buffer(rows)])
        )
        chosen = np.zeros(len(values), dtype=bool)
        chosen[rows] = True
        holds_at = pa.Array.from_buffers(
            pa.bool_(), len(values), [None, pa.py_buffer(np.packbits(chosen, bitorder="little"))]
        )
    masked = pc.replace_substring_regex(picked, _USERINFO, rf"\1{MASK}@")
    if masked.equals(picked):
        return values
    return pc.replace_with_mask(values, holds_at, masked)


def _rows_holding_at(values: pa.Array) -> np.ndarray[Any, np.dtype[np.int64]] | None:
    """The rows of a string array whose bytes hold an ``@``, in order; None for any other
    array (a chunked one, large strings)."""
    if not isinstance(values, pa.Array) or values.type != pa.string():
        return None
    data = values.buffers()[2]
    if data is None or not len(values):
        return np.empty(0, dtype=np.int64)
    offsets = text_offsets(values)
    body = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]
    at = np.flatnonzero(body == ord("@")) + offsets[0]
    if not len(at):
        return np.empty(0, dtype=np.int64)
    # A null's slot may span bytes (Arrow allows it): it is taken, and stays null.
    return np.unique(np.searchsorted(offsets, at, side="right") - 1).astype(np.int64)


def mask_columns(batch: pa.RecordBatch, names: Collection[str]) -> pa.RecordBatch:
    """``batch`` with ``user:pass@`` masked in the string columns ``names``."""
    columns = [
        mask_url_credentials_array(column) if name in names else column
        for name, column in zip(batch.schema.names, batch.columns, strict=True)
    ]
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)
