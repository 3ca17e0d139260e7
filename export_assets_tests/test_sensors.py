"""new_validations_sensor: nothing without new rows, one run per new watermark, stable run keys."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from dagster import build_sensor_context

from export_assets.definitions import defs
from export_assets.defs.operations.sensors import new_validations_sensor, today_partition
from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.lib.sample import SampleDeployment


def evaluate(database: Path, cursor: str | None) -> Any:  # Dagster's tick data (not public)
    context = build_sensor_context(
        cursor=cursor,
        resources={"proxywhirl": ProxyWhirlSource(database=str(database))},
        repository_def=defs.get_repository_def(),
    )
    return new_validations_sensor.evaluate_tick(context)


def add_validation(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        cursor = connection.execute(
            "INSERT INTO validation_results (proxy_url, validated_at, is_valid, "
            "response_time_ms, error_type, error_message) VALUES "
            "('http://203.0.113.9:8080', '2026-11-22 01:02:03.000000', 1, 120.0, NULL, NULL)"
        )
        new_id = cursor.lastrowid
    connection.close()
    assert new_id is not None
    return new_id


def highest_id(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        (value,) = connection.execute("SELECT max(id) FROM validation_results").fetchone()
    connection.close()
    return int(value)


def test_new_rows_request_one_refresh_of_today_with_a_stable_run_key(
    sample_deployment: SampleDeployment, tmp_path: Path
) -> None:
    database = tmp_path / "proxies.db"
    shutil.copy(sample_deployment.database, database)
    watermark = highest_id(database)

    first = evaluate(database, None)  # first look: records the watermark, starts nothing
    assert not first.run_requests
    assert json.loads(first.cursor or "") == {"watermark": watermark}

    unchanged = evaluate(database, first.cursor)
    assert not unchanged.run_requests
    assert "no new validation results" in (unchanged.skip_message or "")
    assert unchanged.cursor == first.cursor

    new_id = add_validation(database)
    fresh = evaluate(database, unchanged.cursor)
    [request] = fresh.run_requests or []
    today = today_partition()
    assert request.partition_key == today
    assert request.run_key == f"{today}:{new_id}"
    assert request.job_name in (None, "daily_export_job")
    assert request.tags["export/requested_by"] == "new_validations_sensor"
    assert request.tags["export/template"] == "daily_export_job"
    assert json.loads(fresh.cursor or "") == {"watermark": new_id}

    # Evaluated again from the same cursor (a retried tick): the same run key, so Dagster
    # starts no second run.
    again = evaluate(database, unchanged.cursor)
    [repeat] = again.run_requests or []
    assert repeat.run_key == request.run_key

    after = evaluate(database, fresh.cursor)
    assert not after.run_requests


def test_a_database_that_is_not_proxywhirl_skips_with_the_reason(tmp_path: Path) -> None:
    database = tmp_path / "other.db"
    sqlite3.connect(database).close()
    result = evaluate(database, json.dumps({"watermark": 1}))
    assert not result.run_requests
    assert "cannot read validation_results" in (result.skip_message or "")
    assert "PROXYWHIRL_DB" in (result.skip_message or "")
