"""The code location: each domain's definitions, merged with the resources they share.

What lives where is ``docs/architecture.md``: ``export_assets.defs`` holds what Dagster
loads (by domain), ``export_assets.lib`` the library code without Dagster.
"""

from __future__ import annotations

from dagster import Definitions, EnvVar, ExecutorDefinition

from export_assets.defs.exports.definitions import definitions as export_definitions
from export_assets.defs.jobs import export_executor
from export_assets.defs.operations.definitions import definitions as operation_definitions
from export_assets.defs.reports.definitions import definitions as report_definitions
from export_assets.defs.resources.io_manager import ExportIOManager
from export_assets.defs.resources.notifier import notifier_from_environment
from export_assets.defs.resources.proxywhirl import DEFAULT_DEPLOYMENT, ProxyWhirlSource
from export_assets.defs.resources.store import ExportStore
from export_assets.defs.source import proxywhirl_deployment
from export_assets.settings import current_settings

# Read when the code location loads: which resources come from the environment is part of
# the definitions. Set values stay EnvVars, resolved when a run starts and never shown in the UI.
_settings = current_settings()


def _env_or(name: str, default: str) -> str:
    """The variable as a Dagster EnvVar (resolved at run time) when set, else ``default``."""
    return EnvVar(name) if _settings.is_set(name) else default


# Logs and config default to their places beside the database, as ProxyWhirl lays them out.
_deployment = _settings.database.parent

export_store = ExportStore(destination=_env_or("EXPORT_DESTINATION", "exports"))
proxywhirl = ProxyWhirlSource(
    database=_env_or("PROXYWHIRL_DB", str(DEFAULT_DEPLOYMENT / "proxies.db")),
    log_dir=_env_or("PROXYWHIRL_LOG_DIR", str(_deployment / "logs")),
    config_path=_env_or("PROXYWHIRL_CONFIG", str(_deployment / "proxywhirl.toml")),
)


def code_location(executor: ExecutorDefinition) -> Definitions:
    """Every definition of the code location, its runs executed by ``executor``.

    ``deploy/celery_location.py`` builds the same location with the Celery executor.
    """
    shared = Definitions(
        # The ProxyWhirl deployment, upstream of every export (export_assets.defs.source).
        assets=[proxywhirl_deployment],
        # Every job, the UI's asset-page runs included.
        executor=executor,
        resources={
            "proxywhirl": proxywhirl,
            "export_store": export_store,
            # It scans what it writes for the deployment's credentials.
            "io_manager": ExportIOManager(store=export_store, proxywhirl=proxywhirl),
            "notifier": notifier_from_environment(),
        },
    )
    return Definitions.merge(
        shared, export_definitions(), report_definitions(), operation_definitions()
    )


# Steps run in the run's own process by default (export_assets.defs.jobs.export_executor).
defs = code_location(export_executor)
