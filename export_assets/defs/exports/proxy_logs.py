"""``proxy_logs``: ProxyWhirl's log records of each UTC day, flattened, credentials masked.

Records come from every log file of the log folder (live, rotated, compressed), ordered by
time, then file name and line number, with bounded memory (see ``export_assets.lib.source.logs``).
``user:pass@`` in URLs is masked in ``message``, ``exception_value`` and ``extra``. Loguru's
``text`` field, where tracebacks are printed with the values of local variables (proxy URLs
with their passwords among them), is never read, so nothing of it reaches an export.

Malformed lines and a partial last line are never fatal and never silently dropped: they
are counted per file in the manifest's source facts and the materialization metadata, and
each file holding malformed lines gets a warning in the run's log (line numbers, never the
line's content).

Anyone who can write to the log folder is not trusted with more than its log files. Names
that look like log files but are symbolic links (never followed), FIFOs, sockets, devices or
directories (never opened), files gone between the listing and the opening (rotated), and
compressed files that inflate past ``max_decompressed_bytes`` or ``max_compression_ratio``
(bombs; reading stops as soon as a limit is passed) are *refused*: never fatal for the other
files, named with why and what to do in the manifest's ``source.refused_files``, in the
``refused_log_files`` metadata and in a WARNING each. A refused bomb is left out whole, the
records read before the limit included: a bomb can carry forged records as well as real
ones. A genuine file refused for its size or ratio is exported by raising that limit.
"""
# No "from __future__ import annotations": Dagster reads the config and resource annotations.

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dagster import MetadataValue
from pydantic import Field, ValidationInfo, field_validator

from export_assets.defs.exports.daily import DayContext, daily_export
from export_assets.defs.source import LOGS
from export_assets.lib.security.credentials import mask_columns
from export_assets.lib.exports import Export
from export_assets.defs.exports.config import ExportConfig
from export_assets.lib.exports.export import Format, closed_on_error
from export_assets.defs.partitions import partition_day
from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.lib.source.log_inflate import (
    DEFAULT_MAX_COMPRESSION_RATIO,
    DEFAULT_MAX_DECOMPRESSED_BYTES,
    LogLimits,
)
from export_assets.lib.source.log_records import LEVELS, LOG_SCHEMA
from export_assets.lib.source.logs import LogDay, LogSelection, day_bounds_us, iso_us, open_log_day

LOG_BATCH_ROWS = 8192
"""Records per batch: log records are large and held as Python objects until batched."""

# Free-text columns that can carry proxy URLs with user:pass@.
_MASKED_COLUMNS = ("message", "exception_value", "extra")
_TIME_OF_DAY = re.compile(r"^[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LogLevelChoice(StrEnum):
    """Loguru's standard levels (an enum: Dagster's config schema takes an optional enum)."""

    TRACE = "TRACE"
    DEBUG = "DEBUG"
    INFO = "INFO"
    SUCCESS = "SUCCESS"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class ProxyLogsConfig(ExportConfig):
    """Run config of ``proxy_logs``."""

    # An unknown name in fields is refused at launch.
    field_names = tuple(LOG_SCHEMA.names)

    format: Format = Field(
        default="jsonl",
        description=(
            "File format: jsonl (default: one JSON object per line), json, csv, parquet or "
            "xlsx (txt is for proxy lists only)."
        ),
    )
    min_level: LogLevelChoice | None = Field(
        default=None,
        description=(
            "Lowest level exported: TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR or CRITICAL "
            "(compared by level number, so custom levels fall in place). Unset: every level."
        ),
    )
    components: list[str] | None = Field(
        default=None,
        description=(
            "Components (record.name) to export, as dotted prefixes: proxywhirl.api matches "
            "proxywhirl.api and proxywhirl.api.core, not proxywhirl.apix. Unset: all."
        ),
    )
    start_time: str | None = Field(
        default=None,
        description=(
            "Export records from this moment on (inclusive): a UTC time of day HH:MM[:SS], or "
            "an ISO timestamp inside the partition's day. Unset: the day's start."
        ),
    )
    end_time: str | None = Field(
        default=None,
        description=(
            "Export records before this moment (exclusive): a UTC time of day HH:MM[:SS], or "
            "an ISO timestamp inside the partition's day (its closing midnight allowed). "
            "Unset: the day's end."
        ),
    )
    contains: str | None = Field(
        default=None,
        description=(
            "Export only records whose message contains this text (case-sensitive; matched "
            "against the message as exported, credentials masked)."
        ),
    )

    max_decompressed_bytes: int = Field(
        default=DEFAULT_MAX_DECOMPRESSED_BYTES,
        ge=1,
        description=(
            "A compressed log file (.gz, .bz2, .xz, .zip, .tar.*) inflating to more than this "
            "many bytes (default 1 GiB, 1073741824) is refused whole: reading stops at the "
            "limit, the file is named in the manifest and metadata, the other files are "
            "exported. Raise it to export a genuine log that large."
        ),
    )
    max_compression_ratio: float = Field(
        default=DEFAULT_MAX_COMPRESSION_RATIO,
        gt=1,
        description=(
            "A compressed log file inflating to more than this many times the compressed "
            "bytes used (checked as it is read, from 64 KiB inflated on) is refused whole as a "
            "decompression bomb. Default 500: loguru JSON logs compress 10-20x, a flood of one "
            "message up to ~380x (xz); a gzip or zip bomb inflates ~1000x. Raise it to export "
            "a genuine log refused for its ratio."
        ),
    )

    @field_validator("components")
    @classmethod
    def _components_are_names(cls, components: list[str] | None) -> list[str] | None:
        if components is None:
            return None
        if not components:
            raise ValueError(
                "components is empty: list component names (e.g. proxywhirl.api), or leave "
                "it unset for all"
            )
        for name in components:
            if not name.strip() or name != name.strip() or name.endswith("."):
                raise ValueError(
                    f"components holds {name!r}, which is not a dotted component name "
                    "(e.g. proxywhirl.api)"
                )
        return components

    @field_validator("start_time", "end_time")
    @classmethod
    def _is_a_moment(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            parse_moment(value, info.field_name or "start_time/end_time")
        return value


def parse_moment(value: str, setting: str) -> time | datetime:
    """A UTC time of day (``HH:MM[:SS[.ffffff]]``) or an ISO timestamp (naive: UTC)."""
    text = value.strip()
    try:
        if _TIME_OF_DAY.match(text):
            return time.fromisoformat(text)
        moment = datetime.fromisoformat(text)
    except ValueError:
        pass
    else:
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    raise ValueError(
        f"{setting} {value!r} is neither a UTC time of day (HH:MM or HH:MM:SS) nor an ISO "
        "timestamp (e.g. 2026-11-01T12:30:00Z)"
    )


def window_us(day: date, start_time: str | None, end_time: str | None) -> tuple[int, int]:
    """``[start, end)`` in µs: the day, narrowed by ``start_time`` and ``end_time``."""
    day_start, day_end = day_bounds_us(day)
    start = day_start if start_time is None else _moment_us(day, start_time, "start_time")
    end = day_end if end_time is None else _moment_us(day, end_time, "end_time")
    if not day_start <= start < day_end:
        raise ValueError(
            f"start_time {start_time!r} ({iso_us(start)}) is not inside the partition's day "
            f"{day.isoformat()} [{iso_us(day_start)}, {iso_us(day_end)}): give a time of day "
            "or a timestamp of that day"
        )
    if not day_start < end <= day_end:
        raise ValueError(
            f"end_time {end_time!r} ({iso_us(end)}) is not inside the partition's day "
            f"{day.isoformat()} ({iso_us(day_start)}, {iso_us(day_end)}]: give a time of day "
            "or a timestamp of that day (its closing midnight allowed)"
        )
    if start >= end:
        raise ValueError(
            f"start_time {start_time!r} is not before end_time {end_time!r}: the window "
            f"[{iso_us(start)}, {iso_us(end)}) is empty"
        )
    return start, end


def _moment_us(day: date, value: str, setting: str) -> int:
    moment = parse_moment(value, setting)
    if isinstance(moment, time):
        moment = datetime.combine(day, moment, tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


@daily_export(
    deps=[LOGS],
    schema=LOG_SCHEMA,
    kinds={"json"},
    description=(
        "ProxyWhirl's log records of the partition's UTC day from every log file (live, "
        "rotated, compressed), flattened and in time order, credentials in URLs masked. "
        "Malformed and partial lines are counted per file in the manifest and metadata; "
        "symlinks, non-regular files and decompression bombs in the log folder are refused "
        "and named there."
    ),
)
def proxy_logs(
    context: DayContext, config: ProxyLogsConfig, proxywhirl: ProxyWhirlSource
) -> Export:
    day = partition_day(context.partition_key)
    start_us, end_us = window_us(day, config.start_time, config.end_time)
    selection = LogSelection(
        start_us=start_us,
        end_us=end_us,
        min_level_no=None if config.min_level is None else LEVELS[config.min_level.value],
        components=None if config.components is None else tuple(config.components),
    )
    limits = LogLimits(
        max_decompressed_bytes=config.max_decompressed_bytes,
        max_compression_ratio=config.max_compression_ratio,
    )
    logs = open_log_day(Path(proxywhirl.log_dir), day, limits)
    with closed_on_error(logs.close):
        source = logs.facts()
        source["selection"] = {
            "start": iso_us(start_us),
            "end": iso_us(end_us),
            "min_level": None if config.min_level is None else config.min_level.value,
            "components": config.components,
            "contains": config.contains,
        }
        _report(context, logs, source)
    return Export(
        schema=LOG_SCHEMA,
        batches=_masked(logs.batches(selection, LOG_BATCH_ROWS), config.contains),
        options=config.options(),
        source=source,
        close=logs.close,
    )


def _report(context: DayContext, logs: LogDay, source: dict[str, Any]) -> None:
    """Log what was found and put the per-file counts into the materialization metadata."""
    totals = source["totals"]
    context.log.info(
        f"{totals['records_in_day']} records of {logs.day.isoformat()} in "
        f"{totals['files']} log file(s) of {logs.log_dir}"
    )
    for scan in logs.scans:
        if scan.malformed:
            lines = ", ".join(str(example["line"]) for example in scan.malformed_examples)
            more = ", ..." if scan.malformed > len(scan.malformed_examples) else ""
            context.log.warning(
                f"{scan.name}: {scan.malformed} malformed line(s) counted and skipped "
                f"(line {lines}{more})"
            )
        if scan.error is not None:
            context.log.warning(f"{scan.name}: read only in part, {scan.error}")
    for entry in logs.ignored:
        context.log.info(f"{entry['name']}: not read, {entry['why']}")
    for refused in logs.refused:
        context.log.warning(
            f"{refused.name} in {logs.log_dir}: refused, {refused.why}; {refused.fix}"
        )
    context.add_output_metadata(
        {
            "log_dir": MetadataValue.path(str(logs.log_dir)),
            "log_files": MetadataValue.json(
                [
                    {
                        key: facts[key]
                        for key in ("name", "lines", "records_in_day", "malformed", "partial")
                    }
                    for facts in source["files"]
                ]
            ),
            "log_lines": MetadataValue.int(totals["lines"]),
            "records_in_day": MetadataValue.int(totals["records_in_day"]),
            "malformed_lines": MetadataValue.int(totals["malformed"]),
            "partial_lines": MetadataValue.int(totals["partial"]),
            "unreadable_log_files": MetadataValue.int(totals["unreadable_files"]),
            "refused_log_files": MetadataValue.json(source["refused_files"]),
            "refused_log_file_count": MetadataValue.int(totals["refused_files"]),
        }
    )


def _masked(batches: Iterator[pa.RecordBatch], contains: str | None) -> Iterator[pa.RecordBatch]:
    """Mask ``user:pass@`` in the free-text columns, then keep messages holding ``contains``."""
    for batch in batches:
        masked = mask_columns(batch, _MASKED_COLUMNS)
        if contains is not None:
            masked = masked.filter(pc.match_substring(masked.column("message"), contains))
        if masked.num_rows:
            yield masked
