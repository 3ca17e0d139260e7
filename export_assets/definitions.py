"""The code location: each domain's definitions, merged with the resources they share.

What lives where is ``docs/architecture.md``: ``export_assets.defs`` holds what Dagster
loads (by domain), ``export_assets.lib`` the library code without Dagster.
"""

from __future__ import annotations

from typing import Any

from dagster import Definitions, EnvVar, ExecutorDefinition

from export_assets.defs.executor import export_executor
from export_assets.defs.exports.definitions import definitions as export_definitions
from export_assets.defs.operations.definitions import definitions as operation_definitions
from export_assets.defs.reports.definitions import definitions as report_definitions
from export_assets.defs.resources.io_manager import ExportIOManager
from export_assets.defs.resources.notifier import notifier_from_environment
from export_assets.defs.resources.proxywhirl import DEFAULT_DEPLOYMENT, ProxyWhirlSource
from export_assets.defs.resources.store import ExportStore
from export_assets.defs.source import proxywhirl_deployment
from export_assets.settings import current_settings


def shared_resources() -> dict[str, Any]:
    """The resources every domain uses, as the environment configures them now.

    Which ones come from the environment is read here, when the code location loads (or a
    command starts): set values stay ``EnvVar``s, resolved when a run starts and never
    shown in the UI; unset ones take their defaults. Logs and config default to their places
    beside the database, as ProxyWhirl lays them out.
    """
    settings = current_settings()

    def env_or(name: str, default: str) -> str:
        return EnvVar(name) if settings.is_set(name) else default

    deployment = settings.database.parent
    export_store = ExportStore(destination=env_or("EXPORT_DESTINATION", "exports"))
    proxywhirl = ProxyWhirlSource(
        database=env_or("PROXYWHIRL_DB", str(DEFAULT_DEPLOYMENT / "proxies.db")),
        log_dir=env_or("PROXYWHIRL_LOG_DIR", str(deployment / "logs")),
        config_path=env_or("PROXYWHIRL_CONFIG", str(deployment / "proxywhirl.toml")),
    )
    return {
        "proxywhirl": proxywhirl,
        "export_store": export_store,
        # It scans what it writes for the deployment's credentials.
        "io_manager": ExportIOManager(store=export_store, proxywhirl=proxywhirl),
        "notifier": notifier_from_environment(),
    }


def code_location(executor: ExecutorDefinition = export_executor) -> Definitions:
    """Every definition of the code location, its runs executed by ``executor``, its
    resources as the environment configures them when called.

    ``deploy/celery_location.py`` builds the same location with the Celery executor; the
    CLI builds it when a command starts.
    """
    shared = Definitions(
        # The ProxyWhirl deployment, upstream of every export (export_assets.defs.source).
        assets=[proxywhirl_deployment],
        # Every job, the UI's asset-page runs included.
        executor=executor,
        resources=shared_resources(),
    )
    return Definitions.merge(
        shared, export_definitions(), report_definitions(), operation_definitions()
    )


# Steps run in the run's own process by default (export_assets.defs.executor).
defs = code_location(export_executor)
