"""Fixtures: real ProxyWhirl deployments on disk and real Dagster instances."""

from __future__ import annotations

import atexit
import base64
import gc
import sqlite3
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from dagster import AssetsDefinition, DagsterInstance, instance_for_test

from export_assets.defs.resources.io_manager import ExportIOManager
from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.defs.resources.store import ExportStore
from export_assets.lib.sample import SampleDeployment, write_sample_deployment
from export_assets_tests import s3_server

SAMPLE_END = date(2026, 11, 20)
SAMPLE_DAYS = 5


@pytest.fixture(scope="session")
def sample_deployment(tmp_path_factory: pytest.TempPathFactory) -> SampleDeployment:
    """A small deterministic sample deployment, shared read-only by the whole session."""
    return write_sample_deployment(
        tmp_path_factory.mktemp("sample") / "proxywhirl",
        proxies=80,
        days=SAMPLE_DAYS,
        end_date=SAMPLE_END,
        validations_per_day=600,
        seed=11,
    )


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy AWS credentials only: no test may reach real AWS or read the user's config."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_server.REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture(scope="session")
def moto_server() -> Iterator[s3_server.MotoServer]:
    """A real S3 endpoint on 127.0.0.1 (moto's server mode), one per test session."""
    yield from s3_server.moto_server()


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    """A throwaway Dagster instance, in memory: runs, events and checks recorded as in any
    instance, without a SQLite file's fsyncs (tests of what persists or crosses processes
    build their own on disk: ``disk_instance``)."""
    with DagsterInstance.ephemeral() as test_instance:
        yield test_instance


# Compute-log capture redirects the whole process's stdout and stderr through `tail -F`
# processes: two runs capturing at once from threads of one test process (as the race tests
# run two "processes") tangle the redirections, and each capture starts four processes.
NO_COMPUTE_LOGS = {
    "compute_logs": {
        "module": "dagster.core.storage.noop_compute_log_manager",
        "class": "NoOpComputeLogManager",
    }
}


@pytest.fixture
def disk_instance() -> Iterator[DagsterInstance]:
    """A throwaway Dagster instance with real (SQLite) storage, without compute-log capture."""
    with instance_for_test(overrides=NO_COMPUTE_LOGS) as test_instance:
        yield test_instance


def export_resources(
    database: Path, exports: Path | str, *, store: ExportStore | None = None, **source: Any
) -> dict[str, Any]:
    """The resources of the code location, pointed at one database and one destination."""
    store = store or ExportStore(destination=str(exports))
    # Its config beside it, as ProxyWhirl lays a deployment out (not the default path's).
    source.setdefault("config_path", str(Path(database).parent / "proxywhirl.toml"))
    proxywhirl = ProxyWhirlSource(database=str(database), **source)
    return {
        "proxywhirl": proxywhirl,
        "export_store": store,
        "io_manager": ExportIOManager(store=store, proxywhirl=proxywhirl),
    }


def proxy_credentials(database: Path, env_file: Path) -> set[str]:
    """Every username and password in the database, in clear text (the sample's key)."""
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    fernet = Fernet(env["PROXYWHIRL_CACHE_ENCRYPTION_KEY"].encode())
    found: set[str] = set()
    with sqlite3.connect(database) as connection:
        for row in connection.execute("SELECT username, password FROM proxy_identities"):
            for value in row:
                if value and value.startswith("encrypted:"):
                    found.add(fernet.decrypt(base64.b64decode(value[10:])).decode())
                    found.add(value[10:])
                elif value:
                    found.add(value)
    connection.close()
    return found


def configured(asset: AssetsDefinition, config: Mapping[str, Any] | None) -> AssetsDefinition:
    """``asset`` (a canonical export) with these fixed settings, as a deployment sets them."""
    from export_assets.defs.exports.daily import with_settings

    return with_settings(asset, **config) if config else asset


REQUEST = "adhoc"


def requested(asset: AssetsDefinition) -> AssetsDefinition:
    """The on-demand asset of ``asset``'s domain (``requests/{name}``)."""
    from export_assets.defs.exports.templates import REQUEST_ASSETS

    name = asset.key.path[-1]
    (found,) = [a for a in REQUEST_ASSETS if a.key.path == ["requests", name]]
    return found


def request_config(
    asset: AssetsDefinition, config: Mapping[str, Any], request: str = REQUEST
) -> dict[str, Any]:
    """Run config of ``requested(asset)``: ``config`` and the request's name."""
    name = asset.key.path[-1]
    return {"ops": {f"requests__{name}": {"config": {**config, "request": request}}}}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Once every test module is imported, move what the imports made (Dagster, pyarrow, the
    code location: millions of objects that live as long as the session) out of the
    collector's reach, so that each garbage collection during the tests walks only what the
    tests themselves allocate."""
    gc.collect()
    gc.freeze()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Hand the frozen objects back to the collector, so that they are freed at exit, and
    keep the interpreter's last collection, which an export in this process turned off
    (``memory.skip_the_final_collection``): DuckDB's binding reports the objects of its
    own that nothing collected at exit as leaks."""
    atexit.unregister(gc.freeze)
    gc.unfreeze()
    gc.collect()


def _reuse_alembic_script_directories() -> None:
    """Read Dagster's migration scripts once per test process, not once per instance.

    Every Dagster instance stamps its new SQLite databases (the in-memory ones of
    ``DagsterInstance.ephemeral()``, and each run's event-log shard on disk) with the newest
    migration, and alembic reads the ~180 script files again for each: 74 ms of CPU per
    ephemeral instance, against 24 ms with them read once (hundreds of instances a session).
    The scripts are files of the installed Dagster: one reading serves every instance.
    """
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    build = ScriptDirectory.from_config
    read: dict[tuple[str | None, str | None], ScriptDirectory] = {}

    def from_config(config: Config) -> ScriptDirectory:
        key = (config.get_alembic_option("script_location"), config.config_file_name)
        if key not in read:
            read[key] = build(config)
        return read[key]

    ScriptDirectory.from_config = staticmethod(from_config)  # type: ignore[method-assign]


_reuse_alembic_script_directories()
