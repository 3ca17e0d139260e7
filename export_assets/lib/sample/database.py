"""Writing the sample ``proxies.db`` in ProxyWhirl's exact schema, fast enough for big samples."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from export_assets.lib.sample.history import ValidationHistory
from export_assets.lib.sample.pool import SampleProxy
from export_assets.lib.source.schema import PROXYWHIRL_DDL

_INSERT_IDENTITY = (
    "INSERT INTO proxy_identities (url, protocol, host, port, username, password, country_code,"
    " country_name, region, city, latitude, longitude, asn, isp_name, is_residential,"
    " is_datacenter, source, source_url, discovered_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_VALIDATION = (
    "INSERT INTO validation_results (id, proxy_url, validated_at, is_valid, response_time_ms,"
    " error_type, error_message) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_STATUS = (
    "INSERT INTO proxy_statuses (proxy_url, health_status, last_success_at, last_failure_at,"
    " last_check_at, consecutive_successes, consecutive_failures, total_checks,"
    " total_successes, avg_response_time_ms, success_rate_7d, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def write_database(path: Path, pool: tuple[SampleProxy, ...], history: ValidationHistory) -> None:
    """Create ``path`` (which must not exist) and fill it with the pool and its history."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        # No journal and no fsync while building: the file is not visible under its final
        # name until it is complete, so a crash only leaves a partial file to delete.
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-65536")
        connection.execute("BEGIN")
        for statement in PROXYWHIRL_DDL:
            connection.execute(statement)
        connection.executemany(_INSERT_IDENTITY, _identity_rows(pool))
        connection.executemany(_INSERT_VALIDATION, history.rows())
        connection.executemany(_INSERT_STATUS, history.status_rows())
        connection.execute("COMMIT")
        connection.execute("PRAGMA journal_mode=DELETE")  # what ProxyWhirl's SQLite uses
    finally:
        connection.close()


def _identity_rows(pool: tuple[SampleProxy, ...]) -> Iterator[tuple[object, ...]]:
    # In discovery order, as ProxyWhirl added them.
    for proxy in sorted(pool, key=lambda p: p.discovered_at):
        yield (
            proxy.url,
            proxy.protocol,
            proxy.host,
            proxy.port,
            proxy.stored_username,
            proxy.stored_password,
            proxy.country_code,
            proxy.country_name,
            proxy.region,
            proxy.city,
            proxy.latitude,
            proxy.longitude,
            proxy.asn,
            proxy.isp_name,
            int(proxy.is_residential),
            int(proxy.is_datacenter),
            proxy.source,
            proxy.source_url,
            proxy.discovered_at_text,
        )
