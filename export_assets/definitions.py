"""The code location: the one place where assets, jobs and resources are wired."""

from __future__ import annotations

from dagster import Definitions, EnvVar, ExecutorDefinition

from export_assets.assets import EXPORT_ASSETS, REPORT_ASSETS
from export_assets.assets.export_audit_log import export_audit_log
from export_assets.assets.source import proxywhirl_deployment
from export_assets.assets.templates import REQUEST_ASSETS, TEMPLATE_ASSETS
from export_assets.checks import verify_exports_job
from export_assets.exports import ExportIOManager, ExportStore
from export_assets.jobs import EXPORT_JOBS, audit_log_job, export_executor
from export_assets.notify import notifier_from_environment
from export_assets.restore.jobs import RESTORE_JOBS
from export_assets.retention import retention_job
from export_assets.run_sweep import dead_run_sweep_sensor
from export_assets.schedules import export_schedules
from export_assets.sensors import EXPORT_SENSORS
from export_assets.settings import current_settings
from export_assets.source import ProxyWhirlSource
from export_assets.source.resource import DEFAULT_DEPLOYMENT

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
    return Definitions(
        # The daily records, then the other copies: templates and on-demand requests, each
        # under its own key and folder (export_assets.assets.templates).
        assets=[
            proxywhirl_deployment,
            *EXPORT_ASSETS,
            *REPORT_ASSETS,
            export_audit_log,
            *TEMPLATE_ASSETS,
            *REQUEST_ASSETS,
        ],
        # Each asset reports its checks from its own step (export_assets.assets.daily);
        # verify_exports_job re-reads published partitions on demand.
        jobs=[*EXPORT_JOBS, *RESTORE_JOBS, retention_job, audit_log_job, verify_exports_job],
        # Every job, the UI's asset-page runs included.
        executor=executor,
        schedules=export_schedules(),
        sensors=[*EXPORT_SENSORS, dead_run_sweep_sensor],
        resources={
            "proxywhirl": proxywhirl,
            "export_store": export_store,
            # It scans what it writes for the deployment's credentials.
            "io_manager": ExportIOManager(store=export_store, proxywhirl=proxywhirl),
            "notifier": notifier_from_environment(),
        },
    )


# Steps run in the run's own process by default (export_assets.jobs.export_executor).
defs = code_location(export_executor)
