"""Every environment variable of export_assets, in one typed, frozen object.

``current_settings()`` reads the environment when it is called: when a run, a sensor tick or
a command starts, and, for the few values Dagster needs in a definition (partition start,
schedules' cron and timezone, sensor interval, retry policy), when the code location loads.
Nothing is cached at import. A bad value fails with an error that names the variable, the
value and the fix. Secrets are ``SecretStr``s: they never appear in a repr, str or log line.

``settings_table()`` renders the table of docs/operations.md ("Settings").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr

_Number = TypeVar("_Number", int, float)

DEFAULT_DATABASE = Path("data/proxywhirl/proxies.db")
"""ProxyWhirl's database when ``PROXYWHIRL_DB`` is unset (the sample deployment's)."""

_ON = frozenset({"1", "true", "yes"})
_OFF = frozenset({"0", "false", "no"})


def parse_number(name: str, text: str, default: _Number, kind: type[_Number], what: str) -> _Number:
    """``text`` (the value of ``name``) as ``kind``, 0 or more; blank: ``default``."""
    text = text.strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not {what}: write e.g. {default}") from None
    if value < 0:
        raise ValueError(f"{name}={text!r} is negative: write 0 or more")
    return value


def env_number(name: str, default: _Number, kind: type[_Number], what: str = "a number") -> _Number:
    """``name`` from the environment as ``kind`` (0 or more), or ``default`` when unset."""
    return parse_number(name, os.environ.get(name, ""), default, kind, what)


# Parsers: (variable name, stripped non-blank text) -> value. Blank means unset everywhere.
_Parser = Callable[[str, str], Any]


def _text(_: str, text: str) -> str:
    return text


def _path(_: str, text: str) -> Path:
    return Path(text)


def _secret(_: str, text: str) -> SecretStr:
    return SecretStr(text)


def _flag_on(_: str, text: str) -> bool:
    """True only for 1/true/yes (anything else: off), as the variable has always read."""
    return text.lower() in _ON


def _flag_off(_: str, text: str) -> bool:
    """False only for 0/false/no (anything else: on)."""
    return text.lower() not in _OFF


def _addresses(_: str, text: str) -> tuple[str, ...]:
    return tuple(a.strip() for a in text.split(",") if a.strip())


def _day(name: str, text: str) -> str:
    try:
        date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a date: write it as YYYY-MM-DD") from None
    return text


def _number(kind: type[_Number], default: _Number, what: str) -> _Parser:
    return lambda name, text: parse_number(name, text, default, kind, what)


def _byte_limit(name: str, text: str) -> int:
    text = text.replace("_", "")
    try:
        limit = int(text)
    except ValueError:
        raise ValueError(
            f"{name}={text!r} is not a number of bytes: write e.g. 5000000000, or "
            "unset it for no limit"
        ) from None
    if limit <= 0:
        raise ValueError(f"{name}={text!r} must be positive: unset it for no limit")
    return limit


def _port(name: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{name}={text!r} is not a port number: write e.g. 587 (or 25)")
    return int(text)


def _meta(
    variable: str, kind: str, doc: str, parse: _Parser, *, shown: str | None = None
) -> dict[str, Any]:
    """A field's variable, type, description and parser; ``shown``: its default in the table."""
    return {"variable": variable, "kind": kind, "doc": doc, "parse": parse, "shown": shown}


@dataclass(frozen=True)
class Settings:
    """The environment of export_assets, typed; build it with ``current_settings()``."""

    # ProxyWhirl, the source.
    database: Path = field(
        default=DEFAULT_DATABASE,
        metadata=_meta("PROXYWHIRL_DB", "path", "ProxyWhirl's SQLite database (read-only).", _path),
    )
    log_dir: Path | None = field(
        default=None,
        metadata=_meta(
            "PROXYWHIRL_LOG_DIR",
            "path",
            "Folder of ProxyWhirl's JSON logs.",
            _path,
            shown="`logs/` beside the database",
        ),
    )
    config: Path | None = field(
        default=None,
        metadata=_meta(
            "PROXYWHIRL_CONFIG",
            "path",
            "ProxyWhirl's TOML config.",
            _path,
            shown="`proxywhirl.toml` beside the database",
        ),
    )
    cache_key: SecretStr | None = field(
        default=None,
        metadata=_meta(
            "PROXYWHIRL_CACHE_ENCRYPTION_KEY",
            "secret",
            "ProxyWhirl's Fernet key of the credentials in its database.",
            _secret,
        ),
    )
    cache_previous_key: SecretStr | None = field(
        default=None,
        metadata=_meta(
            "PROXYWHIRL_CACHE_KEY_PREVIOUS",
            "secret",
            "ProxyWhirl's previous Fernet key (during a key rotation).",
            _secret,
        ),
    )
    config_key: SecretStr | None = field(
        default=None,
        metadata=_meta(
            "PROXYWHIRL_KEY",
            "secret",
            "Fernet key of the config's credentials (the default `encryption_key_env`; a config "
            "may name another variable).",
            _secret,
        ),
    )
    # Exports.
    destination: str = field(
        default="exports",
        metadata=_meta(
            "EXPORT_DESTINATION",
            "path or URL",
            "Where exports are written: a folder, or `s3://bucket/prefix`.",
            _text,
        ),
    )
    partition_start: str = field(
        default="2025-01-01",
        metadata=_meta(
            "EXPORT_PARTITION_START",
            "date (YYYY-MM-DD)",
            "First day of the daily partitions (read when the code location loads).",
            _day,
        ),
    )
    encryption_key: SecretStr | None = field(
        default=None,
        metadata=_meta(
            "EXPORT_ENCRYPTION_KEY",
            "secret",
            "Fernet key of the `encrypt` credential policy.",
            _secret,
        ),
    )
    password: SecretStr | None = field(
        default=None,
        metadata=_meta(
            "EXPORT_PASSWORD",
            "secret",
            "Password of the `encrypt` policy (stretched with scrypt) when no key is set.",
            _secret,
        ),
    )
    max_bytes: int | None = field(
        default=None,
        metadata=_meta(
            "EXPORT_MAX_BYTES",
            "int > 0 (`_` allowed)",
            "Refuse an export estimated larger than this many bytes; unset: no limit.",
            _byte_limit,
        ),
    )
    lease_wait_seconds: float = field(
        default=120.0,
        metadata=_meta(
            "EXPORT_LEASE_WAIT_SECONDS",
            "float ≥ 0",
            "How long a run waits for another run of the same partition to finish.",
            _number(float, 120.0, "a number of seconds"),
        ),
    )
    retention_days: int = field(
        default=30,
        metadata=_meta(
            "EXPORT_RETENTION_DAYS",
            "int ≥ 0",
            "Days of partitions (before today, UTC) that retention keeps.",
            _number(int, 30, "a whole number of days"),
        ),
    )
    max_retries: int = field(
        default=3,
        metadata=_meta(
            "EXPORT_MAX_RETRIES",
            "int ≥ 0",
            "Retries of a failed export step (read when the code location loads).",
            _number(int, 3, "a number"),
        ),
    )
    retry_delay_seconds: float = field(
        default=10.0,
        metadata=_meta(
            "EXPORT_RETRY_DELAY_SECONDS",
            "float ≥ 0",
            "First retry delay, doubled at each retry, with jitter (read at load).",
            _number(float, 10.0, "a number"),
        ),
    )
    requested_by: str | None = field(
        default=None,
        metadata=_meta(
            "EXPORT_REQUESTED_BY",
            "text",
            "Who the CLI's runs are recorded as requested by.",
            _text,
            shown="the login name",
        ),
    )
    # Schedules and sensors: read when the code location loads (part of their definitions).
    schedules_running: bool = field(
        default=False,
        metadata=_meta(
            "EXPORT_SCHEDULES_RUNNING",
            "flag (1/true/yes)",
            "Schedules start running with the daemon, without a click in the UI.",
            _flag_on,
        ),
    )
    schedule_timezone: str = field(
        default="UTC",
        metadata=_meta(
            "EXPORT_SCHEDULE_TIMEZONE",
            "IANA timezone",
            "Timezone of the schedules' cron (partitions stay UTC days).",
            _text,
        ),
    )
    daily_cron: str = field(
        default="15 0 * * *",
        metadata=_meta("EXPORT_DAILY_CRON", "cron", "When the daily export runs.", _text),
    )
    weekly_cron: str = field(
        default="30 0 * * 1",
        metadata=_meta("EXPORT_WEEKLY_CRON", "cron", "When the weekly reports run.", _text),
    )
    audit_cron: str = field(
        default="0 1 * * *",
        metadata=_meta("EXPORT_AUDIT_CRON", "cron", "When the audit trail is exported.", _text),
    )
    retention_cron: str = field(
        default="0 2 * * *",
        metadata=_meta("EXPORT_RETENTION_CRON", "cron", "When retention runs.", _text),
    )
    verify_cron: str = field(
        default="30 3 * * 0",
        metadata=_meta(
            "EXPORT_VERIFY_CRON",
            "cron",
            "When the deep re-read of the exports runs (off until switched on).",
            _text,
        ),
    )
    sensor_interval_seconds: int = field(
        default=300,
        metadata=_meta(
            "EXPORT_SENSOR_INTERVAL_SECONDS",
            "int ≥ 0",
            "Minimum interval of the sensor that refreshes today's partition.",
            _number(int, 300, "a whole number of seconds"),
        ),
    )
    # Notifications (failure sensor).
    smtp_host: str | None = field(
        default=None,
        metadata=_meta(
            "EXPORT_SMTP_HOST", "host", "SMTP server of failure emails; unset: no email.", _text
        ),
    )
    smtp_port: int | None = field(
        default=None, metadata=_meta("EXPORT_SMTP_PORT", "port", "SMTP port.", _port, shown="`587`")
    )
    smtp_starttls: bool | None = field(
        default=None,
        metadata=_meta(
            "EXPORT_SMTP_STARTTLS",
            "flag (0/false/no: off)",
            "Upgrade the SMTP connection with STARTTLS.",
            _flag_off,
            shown="on",
        ),
    )
    smtp_user: str | None = field(
        default=None, metadata=_meta("EXPORT_SMTP_USER", "text", "SMTP login.", _text)
    )
    smtp_password: SecretStr | None = field(
        default=None, metadata=_meta("EXPORT_SMTP_PASSWORD", "secret", "SMTP password.", _secret)
    )
    email_from: str | None = field(
        default=None,
        metadata=_meta(
            "EXPORT_EMAIL_FROM",
            "address",
            "Sender of failure emails.",
            _text,
            shown="`export-assets@localhost`",
        ),
    )
    email_to: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            "EXPORT_EMAIL_TO",
            "addresses, comma-separated",
            "Recipients of failure emails.",
            _addresses,
            shown="none",
        ),
    )
    webhook_url: SecretStr | None = field(
        default=None,
        metadata=_meta(
            "EXPORT_WEBHOOK_URL",
            "secret URL",
            "URL failures are POSTed to as signed JSON (may hold a token); unset: no webhook.",
            _secret,
        ),
    )
    webhook_secret: SecretStr | None = field(
        default=None,
        metadata=_meta(
            "EXPORT_WEBHOOK_SECRET",
            "secret",
            "Key of the webhook's HMAC-SHA256 signature.",
            _secret,
        ),
    )
    success_digest: bool = field(
        default=False,
        metadata=_meta(
            "EXPORT_SUCCESS_DIGEST",
            "flag (1/true/yes)",
            "Also notify one digest per successful scheduled run.",
            _flag_on,
        ),
    )
    # Dagster's own.
    dagster_home: Path | None = field(
        default=None,
        metadata=_meta(
            "DAGSTER_HOME", "path", "Dagster's instance folder; the CLI needs it.", _path
        ),
    )
    webserver_url: str | None = field(
        default=None,
        metadata=_meta(
            "DAGSTER_WEBSERVER_URL",
            "URL",
            "Base URL of the Dagster UI, for links in alerts.",
            _text,
            shown="`http://127.0.0.1:3000`",
        ),
    )
    set_variables: frozenset[str] = field(default=frozenset(), repr=False)
    """The variables set (not blank) in the environment this was read from."""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings of ``environ`` (default: the process environment, read now)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        present: set[str] = set()
        for spec in fields(cls):
            if "variable" not in spec.metadata:
                continue
            name = spec.metadata["variable"]
            text = env.get(name, "").strip()
            if text:
                values[spec.name] = spec.metadata["parse"](name, text)
                present.add(name)
        return cls(**values, set_variables=frozenset(present))

    def is_set(self, variable: str) -> bool:
        """Whether ``variable`` was set (not blank) in the environment."""
        return variable in self.set_variables

    def value(self, variable: str) -> Any:
        """The value of the field read from ``variable`` (e.g. a schedule row's cron)."""
        for spec in fields(self):
            if spec.metadata.get("variable") == variable:
                return getattr(self, spec.name)
        raise KeyError(f"{variable} is not a setting: add it to export_assets.settings.Settings")

    def config_for(self, database: Path) -> Path:
        """``PROXYWHIRL_CONFIG``, else ``proxywhirl.toml`` beside ``database``."""
        return self.config or database.parent / "proxywhirl.toml"

    def log_dir_for(self, database: Path) -> Path:
        """``PROXYWHIRL_LOG_DIR``, else ``logs`` beside ``database``."""
        return self.log_dir or database.parent / "logs"


def current_settings() -> Settings:
    """The settings as the environment holds them now (never cached: call it when needed)."""
    return Settings.from_environment()


def _shown(default: Any) -> str:
    return "unset" if default is None else "off" if default is False else f"`{default}`"


def settings_table() -> str:
    """The Markdown table of every variable: paste it under "Settings" in docs/operations.md."""
    rows = ["| Variable | Type | Default | What it does |", "|---|---|---|---|"]
    for spec in fields(Settings):
        if "variable" in spec.metadata:
            meta = spec.metadata
            default = meta["shown"] or _shown(spec.default)
            cells = (f"`{meta['variable']}`", meta["kind"], default, meta["doc"])
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"
