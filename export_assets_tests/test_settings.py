"""The one settings object: every variable typed, read when asked, documented in one table."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from export_assets.defs import partitions, retries
from export_assets.defs.operations import schedules, sensors
from export_assets.defs.resources.notifier import (
    DEFAULT_WEBSERVER_URL,
    Notifier,
    notifier_from_environment,
)
from export_assets.defs.resources.proxywhirl import DEFAULT_DEPLOYMENT
from export_assets.lib.exports import lease, retention
from export_assets.settings import Settings, current_settings, settings_table

ROOT = Path(__file__).resolve().parents[1]
VARIABLES = [f.metadata["variable"] for f in dataclasses.fields(Settings) if f.metadata]
SECRETS = [
    f.metadata["variable"]
    for f in dataclasses.fields(Settings)
    if "secret" in f.metadata.get("kind", "")
]

# Functions that take the variables as a mapping (Dagster-resolved values, or the key a
# config's encryption_key_env names) and fall back to the process environment.
READ_BY_NAME = {
    "lib/security/crypto.py",
    "lib/security/policy.py",
    "lib/security/leaks.py",
    "lib/restore/pool.py",
    "lib/restore/verify.py",
    "lib/restore/config.py",
}
# Sets pyarrow's own ARROW_DEFAULT_MEMORY_POOL before pyarrow loads (a library's variable,
# written where unset; no setting of ours is read there).
SETS_A_LIBRARYS_VARIABLE = {"__init__.py"}


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting from the developer's shell leaks into a test."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_documented_table_is_the_settings_class() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    documented = "".join(line + "\n" for line in section.splitlines() if line.startswith("|"))
    assert documented == settings_table(), (
        "docs/operations.md's Settings table differs from export_assets.settings.Settings: "
        "paste the output of `python -c 'from export_assets.settings import settings_table; "
        'print(settings_table(), end="")\'` in its place'
    )


def test_every_setting_is_in_the_table_once() -> None:
    rows = settings_table().splitlines()[2:]
    assert [re.match(r"\| `(\w+)`", row).group(1) for row in rows] == VARIABLES  # type: ignore[union-attr]
    assert len(set(VARIABLES)) == len(VARIABLES) >= 27


def test_no_module_reads_the_environment_itself() -> None:
    readers = set()
    for path in (ROOT / "export_assets").rglob("*.py"):
        if re.search(r"os\.environ|os\.getenv|getenv\(", path.read_text()):
            readers.add(path.relative_to(ROOT / "export_assets").as_posix())
    assert readers - READ_BY_NAME - SETS_A_LIBRARYS_VARIABLE == {"settings.py"}


def test_defaults_agree_with_the_modules_that_use_them() -> None:
    defaults = Settings()
    assert defaults.database == DEFAULT_DEPLOYMENT / "proxies.db"
    assert defaults.partition_start == partitions.DEFAULT_PARTITION_START
    assert defaults.retention_days == retention.DEFAULT_KEEP_DAYS
    assert defaults.max_retries == retries.DEFAULT_MAX_RETRIES
    assert defaults.retry_delay_seconds == retries.DEFAULT_RETRY_DELAY_SECONDS
    assert defaults.lease_wait_seconds == lease.DEFAULT_WAIT_SECONDS
    assert defaults.sensor_interval_seconds == sensors.DEFAULT_MINIMUM_INTERVAL_SECONDS
    assert defaults.schedule_timezone == schedules.DEFAULT_TIMEZONE
    for row in schedules.SCHEDULES:
        assert defaults.value(row.cron_variable) == row.default_cron, row.name
    table = settings_table()
    notifier = Notifier()
    assert f"`{DEFAULT_WEBSERVER_URL}`" in table
    assert f"`{notifier.smtp_port}`" in table
    assert f"`{notifier.email_from}`" in table


def test_settings_are_read_when_asked_not_at_import(clean_environment: pytest.MonkeyPatch) -> None:
    assert current_settings().retention_days == 30
    assert retention.default_keep_days() == 30
    clean_environment.setenv("EXPORT_RETENTION_DAYS", "7")
    clean_environment.setenv("EXPORT_DESTINATION", "s3://bucket/prefix")
    assert current_settings().retention_days == 7
    assert retention.default_keep_days() == 7
    assert current_settings().destination == "s3://bucket/prefix"
    assert current_settings().is_set("EXPORT_DESTINATION")


def test_the_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.destination = "elsewhere"  # type: ignore[misc]


def test_secrets_never_show_in_repr_or_str(clean_environment: pytest.MonkeyPatch) -> None:
    values = {name: f"s3cr3t-{i}-{name.lower()}" for i, name in enumerate(SECRETS)}
    for name, value in values.items():
        clean_environment.setenv(name, value)
    settings = current_settings()
    shown = repr(settings) + str(settings) + repr(dataclasses.asdict(settings))
    for value in values.values():
        assert value not in shown
    assert settings.encryption_key is not None
    assert settings.smtp_password is not None
    assert settings.encryption_key.get_secret_value() == values["EXPORT_ENCRYPTION_KEY"]
    assert settings.smtp_password.get_secret_value() == values["EXPORT_SMTP_PASSWORD"]
    assert {"EXPORT_SMTP_PASSWORD", "EXPORT_WEBHOOK_SECRET", "EXPORT_PASSWORD"} <= set(SECRETS)


def test_notification_secrets_stay_environment_variables(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    clean_environment.setenv("EXPORT_SMTP_HOST", "127.0.0.1")
    clean_environment.setenv("EXPORT_SMTP_PASSWORD", "hunter2-smtp")
    clean_environment.setenv("EXPORT_WEBHOOK_SECRET", "hunter2-hook")
    clean_environment.setenv("EXPORT_EMAIL_TO", " a@example.com, ,b@example.com ")
    clean_environment.setenv("EXPORT_SMTP_STARTTLS", "no")
    notifier = notifier_from_environment()
    # Dagster resolves EnvVars when a run starts; the definition holds only the name.
    assert "hunter2" not in repr(notifier)
    assert notifier.email_to == ["a@example.com", "b@example.com"]
    assert notifier.smtp_starttls is False


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "EXPORT_RETENTION_DAYS",
            "a month",
            "EXPORT_RETENTION_DAYS='a month' is not a whole number of days: write e.g. 30",
        ),
        (
            "EXPORT_LEASE_WAIT_SECONDS",
            "-1",
            "EXPORT_LEASE_WAIT_SECONDS='-1' is negative: write 0 or more",
        ),
        ("EXPORT_MAX_RETRIES", "many", "EXPORT_MAX_RETRIES='many' is not a number: write e.g. 3"),
        (
            "EXPORT_MAX_BYTES",
            "5GB",
            "EXPORT_MAX_BYTES='5GB' is not a number of bytes: write e.g. 5000000000, or unset it "
            "for no limit",
        ),
        ("EXPORT_MAX_BYTES", "0", "EXPORT_MAX_BYTES='0' must be positive: unset it for no limit"),
        (
            "EXPORT_PARTITION_START",
            "01/02/2025",
            "EXPORT_PARTITION_START='01/02/2025' is not a date: write it as YYYY-MM-DD",
        ),
        (
            "EXPORT_SENSOR_INTERVAL_SECONDS",
            "often",
            "EXPORT_SENSOR_INTERVAL_SECONDS='often' is not a whole number of seconds: "
            "write e.g. 300",
        ),
        (
            "EXPORT_SMTP_PORT",
            "smtp",
            "EXPORT_SMTP_PORT='smtp' is not a port number: write e.g. 587 (or 25)",
        ),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_the_fix(
    clean_environment: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    clean_environment.setenv(variable, value)
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        current_settings()
    assert str(error.value) == message


def test_values_parse_as_they_always_have(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("EXPORT_MAX_BYTES", "10_000")
    clean_environment.setenv("EXPORT_SCHEDULES_RUNNING", " Yes ")
    clean_environment.setenv("EXPORT_SUCCESS_DIGEST", "on")  # only 1/true/yes switch it on
    clean_environment.setenv("EXPORT_DESTINATION", "   ")  # blank: unset
    clean_environment.setenv("PROXYWHIRL_DB", "/srv/pw/proxies.db")
    settings = current_settings()
    assert settings.max_bytes == 10_000
    assert settings.schedules_running is True
    assert settings.success_digest is False
    assert settings.destination == "exports"
    assert not settings.is_set("EXPORT_DESTINATION")
    assert settings.config_for(settings.database) == Path("/srv/pw/proxywhirl.toml")
    assert settings.log_dir_for(settings.database) == Path("/srv/pw/logs")
    assert Settings().smtp_starttls is None  # unset: the Notifier's default (on)
