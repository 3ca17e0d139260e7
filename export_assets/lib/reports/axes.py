"""Value axes of the reports' share charts (success rate, healthy share), shared by the PDF
and the workbook so both show the same range.

A 0-100% axis flattens the changes a weekly report exists to show (a 2.8-point drop is a
few pixels), so a share axis spans the week's values with a margin, on round steps. A chart
whose axis does not start at 0 says so (:attr:`ShareAxis.note`), and uses lines, not bars,
whose lengths would then mislead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

MIN_SPAN = 0.05
"""The narrowest axis, as a share (5 points): flat weeks are not blown up into noise."""
PADDING = 0.25
"""Margin above and below the values, as a share of their span."""
MAX_STEPS = 6
# Candidate steps in tenths of a percentage point (0.1% = 1): 1, 2, 2.5, 5, 10, 20 points.
_STEPS = (10, 20, 25, 50, 100, 200)
_FULL = 1000  # 100%, in tenths of a point


@dataclass(frozen=True)
class ShareAxis:
    """An axis for shares (0.0 to 1.0): its ends and its step, on round values."""

    low: float
    high: float
    step: float

    @property
    def from_zero(self) -> bool:
        return self.low == 0.0

    @property
    def note(self) -> str:
        """What the chart says about its axis: its range, and that it is not from 0."""
        span = f"{_percent(self.low)}–{_percent(self.high)}"
        if self.from_zero:
            return f"axis {span}"
        return f"axis {span}, scaled to the week's values (not from 0)"


def _percent(share: float) -> str:
    return f"{share * 100:g}%"


def share_axis(values: Iterable[float | None]) -> ShareAxis:
    """An axis for ``values`` (shares; ``None``, a day without data, is left out): the
    values' range widened to at least :data:`MIN_SPAN`, plus :data:`PADDING` on each side,
    rounded out to the smallest round step that needs at most :data:`MAX_STEPS` steps, and
    kept within 0 and 100%. No value at all: 0 to 100%."""
    known = [min(max(v, 0.0), 1.0) for v in values if v is not None and math.isfinite(v)]
    if not known:
        return ShareAxis(0.0, 1.0, 0.2)
    lowest, highest = min(known) * _FULL, max(known) * _FULL
    span = max(highest - lowest, MIN_SPAN * _FULL)
    middle = (lowest + highest) / 2
    low, high = middle - span * (0.5 + PADDING), middle + span * (0.5 + PADDING)
    # Keep the window's width when it would cross 0% or 100%: shift it back inside.
    if low < 0:
        low, high = 0.0, high - low
    if high > _FULL:
        low, high = max(low - (high - _FULL), 0.0), float(_FULL)
    for step in _STEPS:
        bottom = math.floor(low / step + 1e-9) * step
        top = math.ceil(high / step - 1e-9) * step
        if (top - bottom) / step <= MAX_STEPS:
            break
    bottom, top = max(bottom, 0), min(top, _FULL)
    return ShareAxis(bottom / _FULL, top / _FULL, step / _FULL)
