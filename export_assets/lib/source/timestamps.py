"""ProxyWhirl's DATETIME text, read liberally and turned into UTC Arrow timestamps."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.compute as pc

TIMESTAMP_UTC = pa.timestamp("us", tz="UTC")

# ProxyWhirl writes naive UTC text; older rows or other writers may add a UTC suffix.
_UTC_SUFFIX = r"(Z|[+-]00:?00)$"


class TimestampError(ValueError):
    """A DATETIME column holds text that is not a timestamp."""


def parse_utc_text(values: pa.Array, column: str) -> pa.Array:
    """Parse ProxyWhirl DATETIME text (naive UTC, ' ' or 'T', optional fraction/offset)."""
    if values.type != pa.string():
        values = values.cast(pa.string())
    try:
        naive = pc.cast(pc.replace_substring_regex(values, _UTC_SUFFIX, ""), pa.timestamp("us"))
        return naive.cast(TIMESTAMP_UTC)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # A rare non-UTC offset or a bad value: parse one by one to convert or name it.
        return pa.array([_parse_one(v, column) for v in values.to_pylist()], TIMESTAMP_UTC)


def _parse_one(text: str | None, column: str) -> datetime | None:
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise TimestampError(
            f"{column} holds {text[:60]!r}, which is not a timestamp; ProxyWhirl writes "
            "'YYYY-MM-DD HH:MM:SS.ffffff' (UTC): is this a ProxyWhirl database?"
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def day_text(day: date) -> str:
    """The lower bound that selects DATETIME text of ``day`` and later by text comparison.

    Every accepted form starts with the ISO date, so ``value >= 'YYYY-MM-DD'`` holds
    exactly for values on that day or after, whatever separator or suffix follows.
    """
    return day.isoformat()


def to_text(moment: datetime) -> str:
    """Write a moment the way ProxyWhirl does: naive UTC text with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
