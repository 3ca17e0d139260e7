"""The ProxyWhirl deployment in the asset graph: its database, logs and config, upstream of
every export, observed (never written) so the catalog shows when each last changed.

Observing is one short read-only look: the database's validation watermark and proxy
count (one statement each, no lock held beyond them), the log folder's files by name,
size and modification time, the config's sha256. Each becomes the source's data version;
the UI's "Observe sources" records one, and a change marks the exports downstream.
"""

# No "from __future__ import annotations": Dagster reads the context and resource types.

import hashlib
from collections.abc import Iterator
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    DataVersion,
    MetadataValue,
    ObserveResult,
    multi_observable_source_asset,
)

from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.lib.source.database import database_version

SOURCE_GROUP = "proxywhirl_source"
DATABASE = AssetKey(["proxywhirl", "database"])
LOGS = AssetKey(["proxywhirl", "logs"])
CONFIG = AssetKey(["proxywhirl", "config"])
OWNERS = ["team:proxywhirl-operations"]


@multi_observable_source_asset(  # type: ignore[untyped-decorator]
    name="proxywhirl_deployment",
    specs=[
        AssetSpec(
            DATABASE,
            group_name=SOURCE_GROUP,
            kinds={"sqlite"},
            owners=OWNERS,
            description="ProxyWhirl's proxies.db (PROXYWHIRL_DB): proxies, their statuses and "
            "the validation history. Version: highest validation id, proxy count.",
        ),
        AssetSpec(
            LOGS,
            group_name=SOURCE_GROUP,
            kinds={"json"},
            owners=OWNERS,
            description="ProxyWhirl's loguru JSON logs (PROXYWHIRL_LOG_DIR), rotated and "
            "compressed ones included. Version: the files' names, sizes and times.",
        ),
        AssetSpec(
            CONFIG,
            group_name=SOURCE_GROUP,
            kinds={"toml"},
            owners=OWNERS,
            description="ProxyWhirl's proxywhirl.toml (PROXYWHIRL_CONFIG). Version: its sha256.",
        ),
    ],
    can_subset=True,
)
def proxywhirl_deployment(
    context: AssetExecutionContext, proxywhirl: ProxyWhirlSource
) -> Iterator[ObserveResult]:
    """Observe the deployment's files as they are now."""
    selected = context.selected_asset_keys
    if DATABASE in selected:
        yield _database(Path(proxywhirl.database), proxywhirl.busy_timeout_ms)
    if LOGS in selected:
        yield _logs(Path(proxywhirl.log_dir))
    if CONFIG in selected:
        yield _config(Path(proxywhirl.config_path))


def _database(path: Path, busy_timeout_ms: int) -> ObserveResult:
    watermark, proxies = database_version(path, busy_timeout_ms)
    return ObserveResult(
        asset_key=DATABASE,
        data_version=DataVersion(f"validations<={watermark};proxies={proxies}"),
        metadata={
            "path": MetadataValue.path(str(path)),
            "validation_results_max_id": MetadataValue.int(watermark),
            "proxies": MetadataValue.int(proxies),
            "bytes": MetadataValue.int(path.stat().st_size),
        },
    )


def _logs(folder: Path) -> ObserveResult:
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    listing = "\n".join(f"{p.name}\t{p.stat().st_size}\t{p.stat().st_mtime_ns}" for p in files)
    return ObserveResult(
        asset_key=LOGS,
        data_version=DataVersion(hashlib.sha256(listing.encode()).hexdigest()[:16]),
        metadata={
            "path": MetadataValue.path(str(folder)),
            "files": MetadataValue.int(len(files)),
            "bytes": MetadataValue.int(sum(p.stat().st_size for p in files)),
        },
    )


def _config(path: Path) -> ObserveResult:
    data = path.read_bytes() if path.is_file() else b""
    return ObserveResult(
        asset_key=CONFIG,
        data_version=DataVersion(hashlib.sha256(data).hexdigest()[:16] if data else "missing"),
        metadata={
            "path": MetadataValue.path(str(path)),
            "bytes": MetadataValue.int(len(data)),
        },
    )
