"""Shared by the report tests: a published week of exports and reports, and the week's
figures recomputed independently from the SQLite source with plain SQL and numpy."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from dagster import DagsterInstance, materialize

from export_assets.defs.exports.proxy_list import proxy_list
from export_assets.defs.exports.proxy_metrics import proxy_metrics
from export_assets.defs.reports import REPORT_ASSETS
from export_assets.lib.sample import SampleDeployment
from export_assets_tests.conftest import SAMPLE_END, export_resources

REPORT_DAY = SAMPLE_END
# proxy_metrics is published for these days only: the other days of the week are computed
# from the source, and the report must say so.
EXPORTED_DAYS = [SAMPLE_END - timedelta(days=n) for n in (2, 1, 0)]


@dataclass(frozen=True)
class PublishedWeek:
    exports: Path
    database: Path
    result_checks: list[bool]


@pytest.fixture(scope="module")
def published_week(
    sample_deployment: SampleDeployment, tmp_path_factory: pytest.TempPathFactory
) -> PublishedWeek:
    """proxy_metrics for three days, proxy_list of D, then both reports of D, through Dagster."""
    exports = tmp_path_factory.mktemp("reports") / "exports"
    resources = export_resources(
        sample_deployment.database,
        exports,
        config_path=str(sample_deployment.config_path),
        log_dir=str(sample_deployment.log_dir),
    )
    with DagsterInstance.ephemeral() as instance, sample_keys(sample_deployment):
        for day in EXPORTED_DAYS:
            assets = [proxy_metrics, proxy_list] if day == REPORT_DAY else [proxy_metrics]
            result = materialize(
                assets, partition_key=day.isoformat(), instance=instance, resources=resources
            )
            assert result.success
        result = materialize(
            REPORT_ASSETS,
            partition_key=REPORT_DAY.isoformat(),
            instance=instance,
            resources=resources,
        )
        assert result.success
        checks = [e.passed for e in result.get_asset_check_evaluations()]
    return PublishedWeek(exports, sample_deployment.database, checks)


@contextmanager
def sample_keys(sample: SampleDeployment) -> Iterator[None]:
    """The sample's keys in the environment (as ``make run`` sets them from its .env), so
    the leak scan looks for its credentials in clear text and the checks can pass."""
    with pytest.MonkeyPatch.context() as patch:
        for line in sample.env_file.read_text().splitlines():
            name, _, value = line.partition("=")
            if name.endswith("KEY") and value:
                patch.setenv(name, value)
        yield


def published(
    exports: Path, asset: str, day: date, extension: str
) -> tuple[Path, dict[str, object]]:
    """The data file and the manifest of one partition."""
    folder = exports / asset / f"dt={day.isoformat()}"
    manifest: dict[str, object] = json.loads((folder / "_manifest.json").read_text())
    return folder / f"{asset}-{day.isoformat()}{extension}", manifest


@dataclass(frozen=True)
class Expected:
    """A 7-day period's figures, recomputed from plain rows."""

    pool: int
    statuses: dict[str, int]
    new: int
    checks: int
    successes: int
    p50: float | None
    p95: float | None


def status_at(connection: sqlite3.Connection, url: str, moment: str) -> str:
    """A proxy's health at ``moment`` with ProxyWhirl's rules: its checks before it that
    ProxyWhirl counted (recorded from its add on, in id order), after its seed check if its
    status counts one more check and success than the whole counted history."""
    (discovered,) = connection.execute(
        "SELECT replace(discovered_at, 'T', ' ') FROM proxy_identities WHERE url = ?", (url,)
    ).fetchone()
    counted = "proxy_url = ? AND replace(validated_at, 'T', ' ') >= ?"
    outcomes = [
        bool(valid)
        for (valid,) in connection.execute(
            f"SELECT is_valid FROM validation_results WHERE {counted} AND validated_at < ?"
            " ORDER BY id",
            (url, discovered, moment),
        )
    ]
    everything = connection.execute(
        f"SELECT count(*), coalesce(sum(is_valid), 0) FROM validation_results WHERE {counted}",
        (url, discovered),
    ).fetchone()
    status = connection.execute(
        "SELECT total_checks, total_successes FROM proxy_statuses WHERE proxy_url = ?", (url,)
    ).fetchone()
    if status is not None and status[0] == everything[0] + 1 and status[1] == everything[1] + 1:
        outcomes.insert(0, True)  # added as already validated: the seed check
    if not outcomes:
        return "unknown"
    if outcomes[-1]:
        return "healthy"
    failures = len(outcomes) - max((i + 1 for i, ok in enumerate(outcomes) if ok), default=0)
    return "dead" if failures >= 3 else "unhealthy"


def expected_period(database: Path, first: date, last: date) -> Expected:
    """The figures of [first, last] from the SQLite source, computed the plain way."""
    start, stop = first.isoformat(), (last + timedelta(days=1)).isoformat()
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        urls = [
            url
            for (url,) in connection.execute(
                "SELECT url FROM proxy_identities WHERE discovered_at < ?", (stop,)
            )
        ]
        statuses = dict.fromkeys(("healthy", "unhealthy", "dead", "unknown"), 0)
        for url in urls:
            statuses[status_at(connection, url, stop)] += 1
        new = connection.execute(
            "SELECT count(*) FROM proxy_identities WHERE discovered_at >= ? AND discovered_at < ?",
            (start, stop),
        ).fetchone()[0]
        checks, successes = connection.execute(
            "SELECT count(*), coalesce(sum(is_valid), 0) FROM validation_results"
            " WHERE validated_at >= ? AND validated_at < ?",
            (start, stop),
        ).fetchone()
        latencies = [
            value
            for (value,) in connection.execute(
                "SELECT response_time_ms FROM validation_results WHERE validated_at >= ?"
                " AND validated_at < ? AND is_valid = 1 AND response_time_ms IS NOT NULL",
                (start, stop),
            )
        ]
    connection.close()
    p50, p95 = (
        (float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95)))
        if latencies
        else (None, None)
    )
    return Expected(len(urls), statuses, new, checks, successes, p50, p95)
