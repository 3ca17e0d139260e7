"""File formats: streaming writers fed by Arrow record batches."""

from __future__ import annotations

from typing import BinaryIO, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from export_assets.exports.export import Format

EXTENSIONS: dict[Format, str] = {"csv": ".csv"}

# ISO-8601 UTC with a Z; Arrow prints the fraction of %S at the timestamp's unit (us).
CSV_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class FormatWriter(Protocol):
    """Writes batches of one schema in one format; ``close`` writes any trailer."""

    def write(self, batch: pa.RecordBatch) -> None: ...

    def close(self) -> None: ...


class CsvWriter:
    """RFC 4180 CSV, UTF-8, header row; timestamps as ISO-8601 UTC ending in ``Z``."""

    def __init__(self, sink: BinaryIO, schema: pa.Schema) -> None:
        self._timestamps = [i for i, f in enumerate(schema) if pa.types.is_timestamp(f.type)]
        written = schema
        for i in self._timestamps:
            written = written.set(i, pa.field(schema.field(i).name, pa.string()))
        self._writer = pa_csv.CSVWriter(
            sink, written, write_options=pa_csv.WriteOptions(batch_size=8192)
        )
        self._schema = written

    def write(self, batch: pa.RecordBatch) -> None:
        columns = list(batch.columns)
        for i in self._timestamps:
            columns[i] = pc.strftime(columns[i], format=CSV_TIMESTAMP_FORMAT)
        self._writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=self._schema))

    def close(self) -> None:
        self._writer.close()


def open_format_writer(format: Format, sink: BinaryIO, schema: pa.Schema) -> FormatWriter:
    """A writer of ``format`` into ``sink`` (which it does not close)."""
    if format == "csv":
        return CsvWriter(sink, schema)
    raise ValueError(f"unknown export format {format!r}; known: {', '.join(EXTENSIONS)}")
