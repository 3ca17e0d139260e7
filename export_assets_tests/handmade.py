"""Hand-made ProxyWhirl databases with known histories, in ProxyWhirl's exact schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Any

from export_assets.lib.source.schema import PROXYWHIRL_DDL


class HandmadeDatabase:
    """A ``proxies.db`` built row by row; values are written as ProxyWhirl writes them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connection = sqlite3.connect(path)
        for statement in PROXYWHIRL_DDL:
            self.connection.execute(statement)

    def __enter__(self) -> HandmadeDatabase:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.connection.commit()
        self.connection.close()

    def add_proxy(
        self, url: str, *, discovered_at: str = "2026-10-01 00:00:00.000000", **fields: Any
    ) -> None:
        protocol, rest = url.split("://", 1)
        host, port = rest.rsplit(":", 1)
        row: dict[str, Any] = {
            "url": url,
            "protocol": protocol,
            "host": host,
            "port": int(port),
            "is_residential": 0,
            "is_datacenter": 1,
            "source": "fetched",
            "discovered_at": discovered_at,
        }
        row.update(fields)
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.connection.execute(
            f"INSERT INTO proxy_identities ({names}) VALUES ({marks})", tuple(row.values())
        )

    def add_check(
        self,
        url: str,
        validated_at: str,
        is_valid: bool,
        response_time_ms: float | None = None,
        error_type: str | None = None,
        error_message: str | None = None,
    ) -> None:
        self.connection.execute(
            "INSERT INTO validation_results (proxy_url, validated_at, is_valid, response_time_ms,"
            " error_type, error_message) VALUES (?, ?, ?, ?, ?, ?)",
            (url, validated_at, int(is_valid), response_time_ms, error_type, error_message),
        )

    def add_status(self, url: str, **fields: Any) -> None:
        row: dict[str, Any] = {
            "proxy_url": url,
            "health_status": "healthy",
            "consecutive_successes": 1,
            "consecutive_failures": 0,
            "total_checks": 1,
            "total_successes": 1,
            "avg_response_time_ms": 150.0,
            "updated_at": "2026-10-01 00:00:00.000000",
        }
        row.update(fields)
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.connection.execute(
            f"INSERT INTO proxy_statuses ({names}) VALUES ({marks})", tuple(row.values())
        )
