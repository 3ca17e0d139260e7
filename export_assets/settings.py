"""Numeric settings read from the environment, with errors that name the variable and a fix."""

from __future__ import annotations

import os
from typing import TypeVar

_Number = TypeVar("_Number", int, float)


def env_number(name: str, default: _Number, kind: type[_Number], what: str = "a number") -> _Number:
    """``name`` from the environment as ``kind`` (0 or more), or ``default`` when unset."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not {what}: write e.g. {default}") from None
    if value < 0:
        raise ValueError(f"{name}={text!r} is negative: write 0 or more")
    return value
