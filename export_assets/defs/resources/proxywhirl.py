"""The ProxyWhirl deployment as a Dagster resource: where its files are, and how to read them."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from export_assets.lib.source.database import (
    DEFAULT_BATCH_ROWS,
    DEFAULT_BUSY_TIMEOUT_MS,
    DEFAULT_CHUNK_ROWS,
    SourceSnapshot,
)

DEFAULT_DEPLOYMENT = Path("data/proxywhirl")


class ProxyWhirlSource(ConfigurableResource):  # type: ignore[type-arg]
    """A ProxyWhirl deployment, read-only: its SQLite database, log folder and TOML config."""

    database: str = Field(
        default=str(DEFAULT_DEPLOYMENT / "proxies.db"),
        description="Path of ProxyWhirl's SQLite database (PROXYWHIRL_DB).",
    )
    log_dir: str = Field(
        default=str(DEFAULT_DEPLOYMENT / "logs"),
        description="Folder of ProxyWhirl's JSON logs, rotated ones included (PROXYWHIRL_LOG_DIR).",
    )
    config_path: str = Field(
        default=str(DEFAULT_DEPLOYMENT / "proxywhirl.toml"),
        description="ProxyWhirl's proxywhirl.toml, or a pyproject.toml with [tool.proxywhirl] "
        "(PROXYWHIRL_CONFIG).",
    )
    busy_timeout_ms: int = Field(
        default=DEFAULT_BUSY_TIMEOUT_MS,
        description="How long a read waits for a ProxyWhirl writer's lock before failing.",
    )
    batch_rows: int = Field(
        default=DEFAULT_BATCH_ROWS, description="Rows per Arrow record batch read from SQLite."
    )

    chunk_rows: int = Field(
        default=DEFAULT_CHUNK_ROWS,
        ge=64,
        description="Rows a short read of validation_results starts with; reads then adapt "
        "(down, or up to a few times this) so that each holds SQLite's read lock, and keeps "
        "ProxyWhirl's commits waiting, about 20 ms.",
    )

    def open_snapshot(self, *, identities: bool = True) -> SourceSnapshot:
        """Pin the database's snapshot (its validation watermark, and ``proxy_identities``
        unless ``identities`` is false) in one short read; the caller closes it."""
        return SourceSnapshot(
            Path(self.database),
            busy_timeout_ms=self.busy_timeout_ms,
            batch_rows=self.batch_rows,
            chunk_rows=self.chunk_rows,
            identities=identities,
        )
