"""Reading ProxyWhirl's TOML config: proxywhirl.toml, or [tool.proxywhirl] in pyproject.toml."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export_assets.lib.source.database import SourceError

# ProxyWhirl 0.3.3's save_config writes this in place of a credential: the secret is lost.
LOST_BY_SAVE_CONFIG = "**********"
CREDENTIAL_KEYS = ("username", "password")


@dataclass(frozen=True)
class ProxyWhirlConfig:
    """A config file as read: its settings, where they came from, and the file's sha256."""

    path: Path
    settings: dict[str, Any]
    sha256: str
    table: str  # "" for proxywhirl.toml, "tool.proxywhirl" for a pyproject.toml


def read_config(path: Path) -> ProxyWhirlConfig:
    """Read ProxyWhirl's config; errors name the file and what to fix."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SourceError(
            f"ProxyWhirl config {path} does not exist: set PROXYWHIRL_CONFIG to proxywhirl.toml "
            "or to a pyproject.toml with a [tool.proxywhirl] table"
        ) from None
    except IsADirectoryError:
        raise SourceError(
            f"ProxyWhirl config {path} is a directory: set PROXYWHIRL_CONFIG to the file"
        ) from None
    try:
        parsed = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SourceError(f"ProxyWhirl config {path} is not UTF-8 text ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SourceError(f"ProxyWhirl config {path} is not valid TOML: {exc}") from exc
    table = ""
    if path.name == "pyproject.toml":
        settings = parsed.get("tool", {}).get("proxywhirl")
        if not isinstance(settings, dict):
            raise SourceError(
                f"{path} has no [tool.proxywhirl] table: point PROXYWHIRL_CONFIG at the "
                "project's proxywhirl.toml, or add the table"
            )
        parsed, table = settings, "tool.proxywhirl"
    return ProxyWhirlConfig(path, parsed, hashlib.sha256(raw).hexdigest(), table)
