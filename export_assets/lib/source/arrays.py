"""Arrow arrays from Python values, and NumPy views of Arrow arrays, without importing pandas.

``pa.array(values)`` asks whether pandas is installed, to recognise its objects, and that
imports pandas (~35 MiB, ~0.4 s) into a run that never uses it. The columns SQLite hands
over (text, integers, reals, each maybe NULL) are built here from buffers instead; any
other value or type goes to ``pa.array``, which then raises its own error or converts.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

# Arrow type: its NumPy type, and the integers it holds (None: a real).
_NUMPY: dict[pa.DataType, tuple[Any, tuple[int, int] | None]] = {
    pa.int64(): (np.int64, (-(2**63), 2**63 - 1)),
    pa.int32(): (np.int32, (-(2**31), 2**31 - 1)),
    pa.int8(): (np.int8, (-128, 127)),
    pa.float64(): (np.float64, None),
}


def arrow_array(values: Sequence[Any], arrow_type: pa.DataType) -> pa.Array:
    """``pa.array(values, type)``: the same array, built from buffers for text, integer and
    real columns."""
    present = [value for value in values if value is not None]
    validity = None
    if len(present) < len(values):
        mask = np.fromiter((value is not None for value in values), dtype=bool, count=len(values))
        validity = pa.py_buffer(np.packbits(mask, bitorder="little"))
    if arrow_type == pa.string() and all(isinstance(value, str) for value in present):
        encoded = [
            b"" if value is None else value.encode("utf-8", "surrogatepass") for value in values
        ]
        offsets = np.fromiter(
            itertools.accumulate(map(len, encoded), initial=0),
            dtype=np.int64,
            count=len(encoded) + 1,
        )
        if offsets[-1] < 2**31:
            buffers = [
                validity,
                pa.py_buffer(offsets.astype(np.int32)),
                pa.py_buffer(b"".join(encoded)),
            ]
            return pa.Array.from_buffers(arrow_type, len(values), buffers)
    kind, bounds = _NUMPY.get(arrow_type, (None, None))
    if kind is not None and all(
        (type(value) is int and bounds[0] <= value <= bounds[1])
        if bounds is not None
        else type(value) in (int, float)
        for value in present
    ):
        filled = np.fromiter(
            (0 if value is None else value for value in values), dtype=kind, count=len(values)
        )
        return pa.Array.from_buffers(arrow_type, len(values), [validity, pa.py_buffer(filled)])
    return pa.array(values, arrow_type)


def text_offsets(text: pa.Array) -> np.ndarray[Any, np.dtype[np.int32]]:
    """The offsets of a string array's values in its data buffer, one more than the
    values, from the array's own offset on: a view of its buffer (``to_numpy`` would import
    pandas)."""
    _, offsets, _ = text.buffers()
    return np.frombuffer(offsets, dtype=np.int32)[text.offset : text.offset + len(text) + 1]


def int64_values(column: pa.Array) -> np.ndarray[Any, np.dtype[np.int64]]:
    """The values of a null-free int64 array, a view of its buffer."""
    data = column.buffers()[1]
    if not len(column) or data is None:
        return np.empty(0, dtype=np.int64)
    return np.frombuffer(data, dtype=np.int64)[column.offset : column.offset + len(column)]
