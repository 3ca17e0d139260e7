"""``export-assets link``: presigned S3 links and local paths to published exports."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from dagster import DagsterInstance, materialize

from export_assets.cli import main
from export_assets.defs.exports import EXPORT_ASSETS, proxy_list
from export_assets.defs.resources.store import ExportStore
from export_assets.lib.sample import SampleDeployment
from export_assets_tests import s3_server
from export_assets_tests.conftest import SAMPLE_END, export_resources

CLI = Path(sys.executable).with_name("export-assets")
PARTITION = SAMPLE_END.isoformat()


def link(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``export-assets link ARGS`` in this process (the slow test below runs the real one)."""
    result = CliRunner().invoke(main, ["link", *args], env=env)
    return subprocess.CompletedProcess(
        ["link", *args], result.exit_code, result.stdout, result.stderr
    )


def real_link(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), "link", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def aws_env(moto_server: s3_server.MotoServer) -> dict[str, str]:
    """The test's environment (dummy AWS credentials) with moto as the S3 endpoint."""
    return {**os.environ, "AWS_ENDPOINT_URL_S3": moto_server.endpoint_url}


# In this process, and once as the real command (slow: it imports the code location).
@pytest.mark.parametrize("run", [link, pytest.param(real_link, marks=pytest.mark.slow)])
def test_a_local_export_links_to_its_file(
    run: Callable[..., subprocess.CompletedProcess[str]],
    sample_deployment: SampleDeployment,
    tmp_path: Path,
    instance: DagsterInstance,
) -> None:
    exports = tmp_path / "exports"
    resources = export_resources(sample_deployment.database, exports)
    assert materialize(
        [proxy_list], partition_key=PARTITION, resources=resources, instance=instance
    ).success
    result = run("proxy_list", PARTITION, env={**os.environ, "EXPORT_DESTINATION": str(exports)})
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert (
        path
        == (exports / "proxy_list" / f"dt={PARTITION}" / f"proxy_list-{PARTITION}.csv.gz").resolve()
    )
    assert path.is_file()


def test_an_s3_export_gets_a_presigned_link_that_downloads_it(
    sample_deployment: SampleDeployment,
    moto_server: s3_server.MotoServer,
    aws_env: dict[str, str],
    instance: DagsterInstance,
) -> None:
    moto_server.client().create_bucket(Bucket="links")
    store = ExportStore(destination="s3://links/exports", s3=moto_server.resource())
    resources = export_resources(sample_deployment.database, "", store=store)
    assert materialize(
        [proxy_list], partition_key=PARTITION, resources=resources, instance=instance
    ).success

    env = {**aws_env, "EXPORT_DESTINATION": "s3://links/exports"}
    result = link("proxy_list", PARTITION, "--expires", "2h", env=env)
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith(moto_server.endpoint_url)
    assert "X-Amz-Expires=7200" in url
    assert s3_server.SECRET_ACCESS_KEY not in url
    key = f"exports/proxy_list/dt={PARTITION}/proxy_list-{PARTITION}.csv.gz"
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback only)
        downloaded = response.read()
    stored = moto_server.client().get_object(Bucket="links", Key=key)["Body"].read()
    assert downloaded == stored

    too_long = link("proxy_list", PARTITION, "--expires", "8d", env=env)
    assert too_long.returncode == 2
    assert "must expire in 1 second to 7 days" in too_long.stderr


def test_an_unpublished_partition_or_a_bad_duration_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "EXPORT_DESTINATION": str(tmp_path)}
    missing = link("proxy_list", "2026-01-01", env=env)
    assert missing.returncode == 1
    assert "proxy_list 2026-01-01 is not published" in missing.stderr
    bad = link("proxy_list", "2026-01-01", "--expires", "soon", env=env)
    assert bad.returncode == 2
    assert "'soon' is not a duration" in bad.stderr


@pytest.mark.slow  # the whole daily job of a day to S3 (6 assets, 12 checks): ~10 s
def test_export_destination_selects_s3_for_the_code_location(
    sample_deployment: SampleDeployment,
    moto_server: s3_server.MotoServer,
    aws_env: dict[str, str],
    tmp_path: Path,
) -> None:
    moto_server.client().create_bucket(Bucket="wired")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **aws_env,
        "DAGSTER_HOME": str(home),
        "PROXYWHIRL_DB": str(sample_deployment.database),
        "EXPORT_DESTINATION": "s3://wired/daily",
    }
    days = ["materialize", "--last-days", "1", "--end-date", PARTITION]
    result = CliRunner().invoke(main, days, env=env)  # the definitions are built from env
    assert result.exit_code == 0, result.output
    listed = moto_server.client().list_objects_v2(Bucket="wired")["Contents"]
    keys = {item["Key"] for item in listed}
    assert {
        f"daily/proxy_list/dt={PARTITION}/_manifest.json",
        f"daily/proxy_list/dt={PARTITION}/proxy_list-{PARTITION}.csv.gz",
    } <= keys
    assert len(keys) == 2 * len(EXPORT_ASSETS)
    assert f"s3://wired/daily/proxy_list/dt={PARTITION}/proxy_list-{PARTITION}.csv.gz" in (
        result.stdout
    )
