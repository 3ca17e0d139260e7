"""The code location: the one place where assets, jobs and resources are wired."""

from __future__ import annotations

import os

from dagster import Definitions, EnvVar

from export_assets.assets import EXPORT_ASSETS
from export_assets.checks import export_checks
from export_assets.exports import ExportIOManager, ExportStore
from export_assets.jobs import daily_export_job
from export_assets.source import ProxyWhirlSource
from export_assets.source.resource import DEFAULT_DEPLOYMENT


def _env_or(name: str, default: str) -> str:
    """The variable as a Dagster EnvVar (resolved at run time) when set, else ``default``."""
    return EnvVar(name) if name in os.environ else default


export_store = ExportStore(destination=_env_or("EXPORT_DESTINATION", "exports"))

defs = Definitions(
    assets=EXPORT_ASSETS,
    asset_checks=export_checks(EXPORT_ASSETS),
    jobs=[daily_export_job],
    resources={
        "proxywhirl": ProxyWhirlSource(
            database=_env_or("PROXYWHIRL_DB", str(DEFAULT_DEPLOYMENT / "proxies.db")),
            log_dir=_env_or("PROXYWHIRL_LOG_DIR", str(DEFAULT_DEPLOYMENT / "logs")),
            config_path=_env_or("PROXYWHIRL_CONFIG", str(DEFAULT_DEPLOYMENT / "proxywhirl.toml")),
        ),
        "export_store": export_store,
        "io_manager": ExportIOManager(store=export_store),
    },
)
