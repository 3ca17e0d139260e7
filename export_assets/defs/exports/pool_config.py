"""``pool_config``: ProxyWhirl's config as it is when the run happens, without credentials."""
# No "from __future__ import annotations": Dagster reads the config and resource annotations.

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import Field

from export_assets.defs.exports.daily import DayContext, daily_export
from export_assets.defs.source import CONFIG
from export_assets.lib.security.policy import (
    CREDENTIALS_DESCRIPTION,
    CredentialChoice,
    config_credentials,
    credential_protection,
)
from export_assets.lib.security.credentials import mask_url_credentials
from export_assets.defs.exports.config import DocumentConfig
from export_assets.lib.exports.export import DocumentExport, DocumentOptions
from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.lib.source.config import CREDENTIAL_KEYS, LOST_BY_SAVE_CONFIG, read_config

NOT_RECOVERABLE = "not recoverable from the file"
REDACTED = "redacted"


class PoolConfigConfig(DocumentConfig):
    """Run config of ``pool_config``."""

    credentials: CredentialChoice = Field(
        default=CredentialChoice.redact, description=CREDENTIALS_DESCRIPTION
    )

    def options(self) -> DocumentOptions:
        """The document options, with the credential policy."""
        return replace(super().options(), credential_policy=self.credentials.value)


@daily_export(
    deps=[CONFIG],
    kinds={"toml", "yaml"},
    description=(
        "ProxyWhirl's config (proxywhirl.toml or [tool.proxywhirl] in pyproject.toml) as it is "
        "when the run happens: a config keeps no history, so every partition exports the "
        "current file, and the manifest records its sha256. Keys sorted; credentials removed; "
        "user:pass@ in URLs masked."
    ),
)
def pool_config(
    context: DayContext, config: PoolConfigConfig, proxywhirl: ProxyWhirlSource
) -> DocumentExport:
    read = read_config(Path(proxywhirl.config_path))
    options = config.options()
    protection = credential_protection(options.credential_policy)
    protected = 0
    if options.credential_policy == "redact":
        settings, redacted, lost = without_credentials(read.settings)
    else:
        # Protected first, masked after: masking must not touch a credential's clear text.
        settings, redacted = copy.deepcopy(read.settings), 0
        protected, lost = config_credentials(settings, protection)
        settings = _masked(settings)
    if lost:
        context.log.warning(
            f"{len(lost)} proxies in {read.path} have credentials written as "
            f"{LOST_BY_SAVE_CONFIG!r} by ProxyWhirl 0.3.3's save_config: {NOT_RECOVERABLE}"
        )
    return DocumentExport(
        document=settings,
        options=options,
        encryption=protection.encryption,
        source={
            "config": str(read.path),
            "config_table": read.table or None,
            "config_sha256": read.sha256,
            "as_of": "the run (a config file has no history)",
            "credentials_redacted": redacted,
            "credentials_protected": protected,
            "credentials_not_recoverable": lost,
        },
    )


def without_credentials(settings: dict[str, Any]) -> tuple[dict[str, Any], int, list[str]]:
    """Settings without proxy credentials, how many were removed, and the lost ones' URLs.

    Each ``[[proxies]]`` entry that had credentials says so in a ``credentials`` key:
    ``redacted``, or ``not recoverable from the file`` where ProxyWhirl wrote asterisks.
    """
    redacted = 0
    lost: list[str] = []
    clean = _masked(settings)
    for entry in clean.get("proxies", []) if isinstance(clean.get("proxies"), list) else []:
        if not isinstance(entry, dict):
            continue
        values = [entry.pop(key) for key in CREDENTIAL_KEYS if key in entry]
        if not values:
            continue
        if any(value == LOST_BY_SAVE_CONFIG for value in values):
            entry["credentials"] = NOT_RECOVERABLE
            lost.append(str(entry.get("url", "")))
        else:
            entry["credentials"] = REDACTED
            redacted += 1
    return clean, redacted, lost


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_url_credentials(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return value
