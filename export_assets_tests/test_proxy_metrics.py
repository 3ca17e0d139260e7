"""proxy_metrics through Dagster: known answers on a hand-made day, and every group of the
sample deployment recomputed independently (plain sqlite3 rows, numpy percentiles).

Files are read back with pyarrow.parquet, gzip + json and gzip + csv.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import sqlite3
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize

from export_assets.defs.exports.proxy_metrics import proxy_metrics
from export_assets.defs.operations.failures import error_message, user_error
from export_assets.lib.exports.manifest import ExportManifest
from export_assets.lib.sample import SampleDeployment
from export_assets.lib.security.credentials import mask_url_credentials
from export_assets.lib.source.metrics import PROXY_METRICS_SCHEMA
from export_assets.lib.source.validations import ERROR_TYPES
from export_assets_tests.conftest import configured, export_resources
from export_assets_tests.handmade import HandmadeDatabase

DAY = "2026-11-01"
A = "http://198.51.100.1:8080"  # http, DE: latencies 10..100, two failures
B = "socks5://198.51.100.2:1080"  # socks5, no country: failures only
C = "https://198.51.100.3:443"  # https, DE: one latency, one success without a time
D = "http://198.51.100.4:3128"  # known, not checked that day
U = "http://dave:s3cret@203.0.113.9:8080"  # not in proxy_identities (and with credentials)
U_MASKED = "http://***:***@203.0.113.9:8080"
NO_ERRORS = dict.fromkeys([*(f"errors_{name}" for name in ERROR_TYPES), "errors_other"], 0)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "proxies.db"
    path.parent.mkdir()
    with HandmadeDatabase(path) as db:
        db.add_proxy(A, country_code="DE")
        db.add_proxy(B)
        db.add_proxy(C, country_code="DE")
        db.add_proxy(D, country_code="FR")
        db.add_check(A, "2026-10-31 23:59:59.999999", True, 1000.0)  # the day before
        for n, latency in enumerate([70, 20, 100, 10, 50, 40, 90, 30, 60, 80]):
            db.add_check(A, f"2026-11-01 0{n}:00:00.000000", True, float(latency))
        db.add_check(A, "2026-11-01 10:00:00.000000", False, error_type="timeout")
        db.add_check(A, "2026-11-01 23:59:59.999999", False, error_type="ssl_error")
        db.add_check(A, "2026-11-02 00:00:00.000000", True, 1000.0)  # the day after
        db.add_check(B, "2026-11-01 01:00:00.000000", False, error_type="connection_refused")
        db.add_check(B, "2026-11-01 02:00:00.000000", False, error_type="socks_auth_failed")
        db.add_check(B, "2026-11-01 03:00:00.000000", False)  # no error type recorded
        db.add_check(C, "2026-11-01 04:00:00.000000", True, 42.0)
        db.add_check(C, "2026-11-01 05:00:00.000000", True, None)
        db.add_check(U, "2026-11-01 06:00:00.000000", True, 7.0)
        db.add_check(D, "2026-10-30 06:00:00.000000", True, 5.0)
    return path


def run(
    database: Path,
    exports: Path,
    instance: DagsterInstance,
    partition: str = DAY,
    batch_rows: int = 65_536,
    **config: Any,
) -> Path:
    """Materialize one partition; the folder it was written to."""
    result = materialize(
        [configured(proxy_metrics, config)],
        partition_key=partition,
        instance=instance,
        resources=export_resources(database, exports, batch_rows=batch_rows),
    )
    assert result.success
    return exports / "proxy_metrics" / f"dt={partition}"


def read_parquet(folder: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(next(folder.glob("*.parquet"))).to_pylist()
    return rows


def metrics(
    scope: str,
    key: str,
    *,
    proxies: int,
    checks: int,
    successes: int,
    samples: int,
    avg: float | None,
    p50: float | None,
    p95: float | None,
    top: float | None,
    **errors: int,
) -> dict[str, Any]:
    return {
        "scope": scope,
        "key": key,
        "proxies": proxies,
        "checks": checks,
        "successes": successes,
        "failures": checks - successes,
        "success_rate": successes / checks,
        "latency_samples": samples,
        "latency_avg_ms": avg,
        "latency_p50_ms": p50,
        "latency_p95_ms": p95,
        "latency_max_ms": top,
        **NO_ERRORS,
        **{f"errors_{k}": v for k, v in errors.items()},
    }


# Latencies of the day: A 10..100, C 42, U 7. Percentiles interpolate linearly between
# the sorted values at ranks floor(h) and floor(h) + 1, h = (n - 1) p / 100:
#   A (n=10): p50 h=4.5 -> 50 + .5 * 10 = 55; p95 h=8.55 -> 90 + .55 * 10 = 95.5
#   A+C (n=11: 10..40, 42, 50..100): p50 h=5 -> 50; p95 h=9.5 -> 90 + .5 * 10 = 95
#   pool (n=12: 7, 10..40, 42, 50..100): p50 h=5.5 -> 42 + .5 * 8 = 46; p95 h=10.45 -> 94.5
EXPECTED = [
    metrics(
        "pool",
        "all",
        proxies=4,
        checks=18,
        successes=13,
        samples=12,
        avg=599 / 12,
        p50=46.0,
        p95=94.5,
        top=100.0,
        timeout=1,
        ssl_error=1,
        connection_refused=1,
        other=1,
    ),
    metrics(
        "protocol",
        "(unknown)",
        proxies=1,
        checks=1,
        successes=1,
        samples=1,
        avg=7.0,
        p50=7.0,
        p95=7.0,
        top=7.0,
    ),
    metrics(
        "protocol",
        "http",
        proxies=1,
        checks=12,
        successes=10,
        samples=10,
        avg=55.0,
        p50=55.0,
        p95=95.5,
        top=100.0,
        timeout=1,
        ssl_error=1,
    ),
    metrics(
        "protocol",
        "https",
        proxies=1,
        checks=2,
        successes=2,
        samples=1,
        avg=42.0,
        p50=42.0,
        p95=42.0,
        top=42.0,
    ),
    metrics(
        "protocol",
        "socks5",
        proxies=1,
        checks=3,
        successes=0,
        samples=0,
        avg=None,
        p50=None,
        p95=None,
        top=None,
        connection_refused=1,
        other=1,
    ),
    metrics(
        "country",
        "(none)",
        proxies=1,
        checks=3,
        successes=0,
        samples=0,
        avg=None,
        p50=None,
        p95=None,
        top=None,
        connection_refused=1,
        other=1,
    ),
    metrics(
        "country",
        "(unknown)",
        proxies=1,
        checks=1,
        successes=1,
        samples=1,
        avg=7.0,
        p50=7.0,
        p95=7.0,
        top=7.0,
    ),
    metrics(
        "country",
        "DE",
        proxies=2,
        checks=14,
        successes=12,
        samples=11,
        avg=592 / 11,
        p50=50.0,
        p95=95.0,
        top=100.0,
        timeout=1,
        ssl_error=1,
    ),
    metrics(
        "proxy",
        A,
        proxies=1,
        checks=12,
        successes=10,
        samples=10,
        avg=55.0,
        p50=55.0,
        p95=95.5,
        top=100.0,
        timeout=1,
        ssl_error=1,
    ),
    metrics(
        "proxy",
        U_MASKED,
        proxies=1,
        checks=1,
        successes=1,
        samples=1,
        avg=7.0,
        p50=7.0,
        p95=7.0,
        top=7.0,
    ),
    metrics(
        "proxy",
        C,
        proxies=1,
        checks=2,
        successes=2,
        samples=1,
        avg=42.0,
        p50=42.0,
        p95=42.0,
        top=42.0,
    ),
    metrics(
        "proxy",
        B,
        proxies=1,
        checks=3,
        successes=0,
        samples=0,
        avg=None,
        p50=None,
        p95=None,
        top=None,
        connection_refused=1,
        other=1,
    ),
]


def test_known_answers_for_every_scope(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    # Three rows a batch: the percentile pass counts ranks across batches.
    folder = run(database, tmp_path / "exports", instance, batch_rows=3, format="parquet")

    assert sorted(p.name for p in folder.iterdir()) == [
        "_manifest.json",
        f"proxy_metrics-{DAY}.parquet",
    ]
    table = pq.read_table(folder / f"proxy_metrics-{DAY}.parquet")
    assert table.schema.names == PROXY_METRICS_SCHEMA.names
    assert table.to_pylist() == EXPECTED
    facts = ExportManifest.from_json((folder / "_manifest.json").read_bytes())
    assert facts.total_rows == len(EXPECTED)
    assert facts.source == {
        "database": str(database),
        "day": DAY,
        "validation_results_min_id": 2,
        "validation_results_max_id": 20,
    }


def test_jsonl_and_csv_carry_the_same_numbers_and_no_credentials(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    folder = run(database, tmp_path / "jsonl", instance, format="jsonl")
    data = gzip.decompress(next(folder.glob("*.jsonl.gz")).read_bytes())
    assert [json.loads(line) for line in data.splitlines()] == EXPECTED
    assert b"s3cret" not in data

    folder = run(database, tmp_path / "csv", instance)
    text = gzip.decompress(next(folder.glob("*.csv.gz")).read_bytes()).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == PROXY_METRICS_SCHEMA.names
    assert rows[0]["latency_p95_ms"] == "94.5"
    assert rows[4]["latency_avg_ms"] == ""  # socks5: failures only
    assert "s3cret" not in text


def test_a_day_without_checks_has_no_rows(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    folder = run(database, tmp_path / "exports", instance, partition="2026-11-05")
    lines = gzip.decompress(next(folder.glob("*.csv.gz")).read_bytes()).decode().splitlines()
    assert [next(csv.reader(io.StringIO(line))) for line in lines] == [PROXY_METRICS_SCHEMA.names]
    facts = ExportManifest.from_json((folder / "_manifest.json").read_bytes())
    assert facts.total_rows == 0
    assert facts.source["validation_results_min_id"] is None


def test_a_latency_that_is_not_a_number_fails_the_run_naming_it_and_writes_nothing(
    database: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    with sqlite3.connect(database) as connection:
        connection.execute(
            "INSERT INTO validation_results (proxy_url, validated_at, is_valid, response_time_ms)"
            " VALUES (?, '2026-11-01 08:00:00.000000', 1, 'fast')",
            (A,),
        )
    connection.close()
    result = materialize(
        [proxy_metrics],
        partition_key=DAY,
        instance=instance,
        resources=export_resources(database, tmp_path / "exports"),
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None
    error = user_error(failure)
    assert error.cls_name == "SourceError"
    assert error_message(error) == (
        f"{database}: validation_results.response_time_ms holds 'fast', which is not a number "
        "of milliseconds: is this a ProxyWhirl database?"
    )
    assert not any(p.is_file() for p in (tmp_path / "exports").rglob("*"))


def _recomputed(database: Path, day: date) -> list[dict[str, Any]]:
    """The metrics of ``day`` recomputed from plain rows, with numpy's percentiles."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        identities = {
            url: (protocol, country)
            for url, protocol, country in connection.execute(
                "SELECT url, protocol, country_code FROM proxy_identities"
            )
        }
        checks = connection.execute(
            "SELECT proxy_url, validated_at, is_valid, response_time_ms, error_type"
            " FROM validation_results"
        ).fetchall()
    connection.close()
    groups: dict[tuple[str, str], list[tuple[Any, ...]]] = defaultdict(list)
    for check in checks:
        if date.fromisoformat(check[1][:10]) != day:
            continue
        protocol, country = identities.get(check[0], ("(unknown)", "(unknown)"))
        for scope, key in (
            ("pool", "all"),
            ("protocol", protocol),
            ("country", country or "(none)"),
            ("proxy", check[0]),
        ):
            groups[scope, key].append(check)
    rows = []
    scope_order = ["pool", "protocol", "country", "proxy"]
    for scope, key in sorted(groups, key=lambda g: (scope_order.index(g[0]), g[1])):
        members = groups[scope, key]
        latencies = [c[3] for c in members if c[2] and c[3] is not None]
        errors = [c[4] for c in members]
        rows.append(
            {
                "scope": scope,
                "key": mask_url_credentials(key),
                "proxies": len({c[0] for c in members}),
                "checks": len(members),
                "successes": sum(1 for c in members if c[2]),
                "latency_samples": len(latencies),
                "latency_avg_ms": float(np.mean(latencies)) if latencies else None,
                "latency_p50_ms": float(np.percentile(latencies, 50)) if latencies else None,
                "latency_p95_ms": float(np.percentile(latencies, 95)) if latencies else None,
                "latency_max_ms": max(latencies) if latencies else None,
                **{f"errors_{name}": errors.count(name) for name in ERROR_TYPES},
                "errors_other": sum(1 for e in errors if e is not None and e not in ERROR_TYPES),
            }
        )
    return rows


def test_every_group_of_the_sample_deployment_matches_an_independent_computation(
    sample_deployment: SampleDeployment, tmp_path: Path, instance: DagsterInstance
) -> None:
    day = sample_deployment.last_day
    folder = run(
        sample_deployment.database,
        tmp_path / "exports",
        instance,
        partition=day.isoformat(),
        batch_rows=97,
        format="parquet",
    )
    exported = read_parquet(folder)
    expected = _recomputed(sample_deployment.database, day)
    assert [(r["scope"], r["key"]) for r in exported] == [(r["scope"], r["key"]) for r in expected]
    assert {r["scope"] for r in exported} == {"pool", "protocol", "country", "proxy"}
    assert any(r["scope"] == "country" and r["key"] == "(none)" for r in exported)
    for got, want in zip(exported, expected, strict=True):
        for name, value in want.items():
            if isinstance(value, float):
                assert math.isclose(got[name], value, rel_tol=1e-12), (got, name)
            else:
                assert got[name] == value, (got, name)
        assert got["failures"] == got["checks"] - got["successes"]
        assert got["success_rate"] == got["successes"] / got["checks"]
