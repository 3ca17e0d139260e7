"""Keeping proxy credentials out of exports: masking ``user:pass@`` in URLs."""

from __future__ import annotations

import re
from collections.abc import Collection

import pyarrow as pa
import pyarrow.compute as pc

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

    The expression runs only on values holding an ``@`` (the pattern needs one): a
    substring search is several times cheaper than the regex on a million plain URLs.
    """
    if _no_at_sign(values):
        return values
    holds_at = pc.and_kleene(pc.is_valid(values), pc.match_substring(values, "@"))
    if not pc.any(holds_at).as_py():
        return values
    masked = pc.replace_substring_regex(values.filter(holds_at), _USERINFO, rf"\1{MASK}@")
    return pc.replace_with_mask(values, holds_at, masked)


def _no_at_sign(values: pa.Array) -> bool:
    """True when a string array's data buffer holds no ``@`` at all (a byte scan, far
    cheaper than a substring search per value); False means: search per value."""
    if not isinstance(values, pa.Array) or values.type != pa.string():
        return False
    data = values.buffers()[2]
    return data is None or memoryview(data).tobytes().find(b"@") < 0


def mask_columns(batch: pa.RecordBatch, names: Collection[str]) -> pa.RecordBatch:
    """``batch`` with ``user:pass@`` masked in the string columns ``names``."""
    columns = [
        mask_url_credentials_array(column) if name in names else column
        for name, column in zip(batch.schema.names, batch.columns, strict=True)
    ]
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)
