"""One loguru JSON line (``serialize=True``) as a record of ``LOG_SCHEMA``: its time read
cheaply from its end, the line parsed and checked against loguru's record structure, the
record flattened to a row, rows gathered into record batches.

Only the flattened ``record`` fields are returned; loguru's ``text`` (where tracebacks and
their variable values, secrets included, are printed) is never read. Why a line is not a
record is said without its content, which may hold secrets.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pyarrow as pa

from export_assets.lib.source.timestamps import TIMESTAMP_UTC

LEVELS: dict[str, int] = {
    "TRACE": 5,
    "DEBUG": 10,
    "INFO": 20,
    "SUCCESS": 25,
    "WARNING": 30,
    "ERROR": 40,
    "CRITICAL": 50,
}
"""Loguru's standard levels and their numbers."""

LOG_SCHEMA = pa.schema(
    [
        pa.field("time", TIMESTAMP_UTC, nullable=False),
        pa.field("level", pa.string(), nullable=False),
        pa.field("level_no", pa.int32(), nullable=False),
        pa.field("component", pa.string()),
        pa.field("module", pa.string(), nullable=False),
        pa.field("function", pa.string(), nullable=False),
        pa.field("line", pa.int32(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
        pa.field("exception_type", pa.string()),
        pa.field("exception_value", pa.string()),
        pa.field("extra", pa.string()),
        pa.field("process_id", pa.int64(), nullable=False),
        pa.field("thread_name", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
    ]
)
"""One log record, flattened: ``record.time.timestamp`` as UTC, ``record.name`` as the
component, ``extra`` as JSON text with sorted keys; ``source_file`` is the log file's name."""

Row = tuple[Any, ...]
"""One record's values in ``LOG_SCHEMA`` order, less ``source_file``."""


# Loguru serializes ``record`` last and ``time`` last in it: a line ends with its timestamp.
_TIME_AT_END = re.compile(rb'"timestamp": ?(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)\}\}\}\s*$')
_TIME_PROBE_BYTES = 96
_INT32 = 2**31
_INT64 = 2**63
_SURROGATE = re.compile("[\ud800-\udfff]")


def probe_time_us(line: bytes) -> int | None:
    """The timestamp at the end of a loguru line, without parsing the line; None if absent."""
    match = _TIME_AT_END.search(line, max(0, len(line) - _TIME_PROBE_BYTES))
    if match is None:
        return None
    seconds = float(match[1])
    return round(seconds * 1_000_000) if math.isfinite(seconds) else None


def parse_record(line: bytes) -> tuple[int, dict[str, Any]] | str:
    """(time in µs, loguru ``record``) of a line, or why it is not a loguru record."""
    if line.isspace():  # cheaply: a flood of empty lines costs no JSON error each
        return "blank line"
    try:
        document = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8"
    except (ValueError, RecursionError):
        return "not JSON"
    record = document.get("record") if isinstance(document, dict) else None
    if not isinstance(record, dict):
        return "JSON without a loguru record"
    problem = _record_problem(record)
    if problem is not None:
        return f"loguru record with {problem}"
    seconds = record["time"]["timestamp"]
    time_us = seconds * 1_000_000 if isinstance(seconds, int) else round(seconds * 1_000_000)
    return time_us, record


def _is_int(value: Any, bound: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -bound <= value < bound


def _record_problem(record: dict[str, Any]) -> str | None:
    """What in ``record`` is not as loguru writes it, or None."""
    time = record.get("time")
    seconds = time.get("timestamp") if isinstance(time, dict) else None
    if (
        not isinstance(seconds, int | float)
        or isinstance(seconds, bool)
        or not math.isfinite(seconds)
    ):
        return "no time.timestamp"
    level = record.get("level")
    if (
        not isinstance(level, dict)
        or not isinstance(level.get("name"), str)
        or not _is_int(level.get("no"), _INT32)
    ):
        return "no level name and number"
    if not isinstance(record.get("message"), str):
        return "no message"
    name = record.get("name", ...)
    if name is not None and not isinstance(name, str):
        return "no name"
    if not isinstance(record.get("module"), str) or not isinstance(record.get("function"), str):
        return "no module or function"
    if not _is_int(record.get("line"), _INT32):
        return "no line"
    process, thread = record.get("process"), record.get("thread")
    if not isinstance(process, dict) or not _is_int(process.get("id"), _INT64):
        return "no process id"
    if not isinstance(thread, dict) or not isinstance(thread.get("name"), str):
        return "no thread name"
    exception = record.get("exception", ...)
    if exception is not None and not (
        isinstance(exception, dict)
        and isinstance(exception.get("type"), str | None)
        and isinstance(exception.get("value"), str | None)
    ):
        return "an exception that is neither null nor {type, value}"
    if "extra" not in record:
        return "no extra"
    return None


def record_row(time_us: int, record: dict[str, Any]) -> Row:
    """A validated record's values in ``LOG_SCHEMA`` order (``source_file`` left out)."""
    exception = record["exception"]
    return (
        time_us,
        record["level"]["name"],
        record["level"]["no"],
        record["name"],
        record["module"],
        record["function"],
        record["line"],
        record["message"],
        None if exception is None else exception.get("type"),
        None if exception is None else exception.get("value"),
        extra_json(record["extra"]),
        record["process"]["id"],
        record["thread"]["name"],
    )


def extra_json(extra: Any) -> str | None:
    """``extra`` as JSON text with sorted keys (NaN and infinities as null); null as None.

    The separators stay ``", "`` and ``": "``: with a space between any two tokens, masking
    ``user:pass@`` (which stops at whitespace) can never span two JSON strings.
    """
    if extra is None:
        return None
    try:
        return json.dumps(extra, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(extra), sort_keys=True, ensure_ascii=False, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def log_batch(items: list[tuple[str, Row]]) -> pa.RecordBatch:
    """A ``LOG_SCHEMA`` batch of (source file, row) items."""
    columns: list[list[Any]] = [[] for _ in LOG_SCHEMA]
    last = len(LOG_SCHEMA) - 1
    for name, row in items:
        for i, value in enumerate(row):
            columns[i].append(value)
        columns[last].append(name)
    arrays = []
    for values, schema_field in zip(columns, LOG_SCHEMA, strict=True):
        try:
            arrays.append(pa.array(values, schema_field.type))
        except UnicodeEncodeError:
            # A JSON "\ud800" escape decodes to a lone surrogate, which UTF-8 cannot hold.
            arrays.append(pa.array([_without_surrogates(v) for v in values], schema_field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=LOG_SCHEMA)


def _without_surrogates(value: Any) -> Any:
    return _SURROGATE.sub("\ufffd", value) if isinstance(value, str) else value
