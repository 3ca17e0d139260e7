"""Keeping proxy credentials out of exports: masking ``user:pass@`` in URLs."""

from __future__ import annotations

import re

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
    """``mask_url_credentials`` over a string array (nulls stay null)."""
    return pc.replace_substring_regex(values, _USERINFO, rf"\1{MASK}@")
