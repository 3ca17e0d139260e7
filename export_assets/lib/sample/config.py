"""The sample ``proxywhirl.toml`` and ``.env``, written by hand (no TOML writer is installed)."""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping
from pathlib import Path

from export_assets.lib.sample.hostile import HOSTILE_STRINGS
from export_assets.lib.sample.keys import SampleCipher
from export_assets.lib.sample.pool import SampleProxy

CONFIG_KEY_ENV = "PROXYWHIRL_KEY"
CACHE_KEY_ENV = "PROXYWHIRL_CACHE_ENCRYPTION_KEY"
LOST_SECRET = "**********"  # noqa: S105 - what ProxyWhirl 0.3.3's save_config writes instead of a secret

TomlValue = str | int | float | bool


def write_config(
    path: Path, rng: random.Random, pool: tuple[SampleProxy, ...], cipher: SampleCipher
) -> None:
    """Write ``proxywhirl.toml``: settings, ``[[proxies]]`` (Fernet tokens), ``[data_storage]``."""
    hostile = " ".join(text for text in HOSTILE_STRINGS if len(text) < 100)
    settings: dict[str, TomlValue] = {
        "rotation_strategy": "round-robin",
        "health_check_interval": 300,
        "timeout": 30,
        "max_retries": 3,
        "follow_redirects": True,
        "verify_ssl": True,
        "default_format": "table",
        "color": True,
        "verbose": False,
        "storage_backend": "sqlite",
        "storage_path": "proxies.db",
        "cache_enabled": True,
        "cache_l1_max_entries": 1000,
        "cache_l2_dir": ".cache/proxywhirl",
        "cache_default_ttl": 3600,
        "cache_key_prefix": f"pw:{hostile}",  # free text: exercises every TOML escape
        "encrypt_credentials": True,
        "encryption_key_env": CONFIG_KEY_ENV,
        "rate_limit_enabled": True,
        "rate_limit_requests_per_minute": 120,
        "rate_limit_burst": 20,
        "rate_limit_backoff_factor": 1.5,
    }
    data_storage: dict[str, TomlValue] = {
        "async_driver": "aiosqlite",
        "pool_size": 5,
        "max_overflow": 10,
        "persist_validation_results": True,
        "persist_proxy_statuses": True,
        "persist_geo": True,
        "persist_source_metadata": True,
        "retention_days": 30,
    }
    with_credentials = [proxy for proxy in pool if proxy.username is not None]
    without = [proxy for proxy in pool if proxy.username is None]
    chosen = rng.sample(with_credentials, min(4, len(with_credentials)))
    entries: list[dict[str, TomlValue]] = [
        {
            "url": proxy.url,
            "username": cipher.token(proxy.username or ""),
            "password": cipher.token(proxy.password or ""),
        }
        for proxy in chosen[:3]
    ]
    entries += [{"url": proxy.url} for proxy in rng.sample(without, min(3, len(without)))]
    # An entry saved by ProxyWhirl 0.3.3 itself: the secret is gone from the file.
    lost = chosen[3] if len(chosen) > 3 else rng.choice(pool)
    entries.append({"url": lost.url, "username": LOST_SECRET, "password": LOST_SECRET})
    lines = ["# ProxyWhirl configuration (sample deployment written by export-assets)"]
    lines += [f"{key} = {toml_value(value)}" for key, value in settings.items()]
    for entry in entries:
        lines += ["", "[[proxies]]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in entry.items()]
    lines += ["", "[data_storage]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in data_storage.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def toml_value(value: TomlValue) -> str:
    """``value`` as a TOML literal: basic strings escape quotes, backslashes and controls."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    escaped = []
    for char in value:
        if char in _TOML_ESCAPES:
            escaped.append(_TOML_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04X}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


_TOML_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def write_env(path: Path, values: Mapping[str, str]) -> None:
    """Write a ``.env`` readable only by its owner (mode 0600): it holds the keys."""
    text = "".join(f"{name}={_env_value(value)}\n" for name, value in values.items())
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8", newline="\n") as handle:
        os.fchmod(handle.fileno(), 0o600)  # the umask must not loosen or tighten it
        handle.write(text)


def _env_value(value: str) -> str:
    """Plain when safe; otherwise double-quoted with dotenv's escapes (paths with spaces...)."""
    if re.fullmatch(r"[A-Za-z0-9_./:=+@%,-]*", value):
        return value
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'"{escaped}"'
