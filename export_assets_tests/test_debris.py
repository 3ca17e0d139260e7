"""What a killed run leaves behind is cleared by the next export of the partition."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from dagster import DagsterInstance, materialize

from export_assets.defs.exports import proxy_list
from export_assets.lib.exports.s3 import S3Destination
from export_assets.lib.sample import SampleDeployment
from export_assets_tests import s3_server
from export_assets_tests.conftest import SAMPLE_END, export_resources

PARTITION = SAMPLE_END.isoformat()


def test_old_temporary_files_go_and_fresh_ones_stay(
    sample_deployment: SampleDeployment, tmp_path: Path, instance: DagsterInstance
) -> None:
    folder = tmp_path / "exports" / "proxy_list" / f"dt={PARTITION}"
    folder.mkdir(parents=True)
    killed = folder / f".proxy_list-{PARTITION}.csv.gz.0123abcd.tmp"
    killed.write_bytes(b"half a file")
    seven_hours_ago = time.time() - 7 * 3600
    os.utime(killed, (seven_hours_ago, seven_hours_ago))
    in_flight = folder / f".proxy_list-{PARTITION}.csv.gz.4567cdef.tmp"
    in_flight.write_bytes(b"another run, still writing")

    resources = export_resources(sample_deployment.database, tmp_path / "exports")
    assert materialize(
        [proxy_list], partition_key=PARTITION, resources=resources, instance=instance
    ).success
    assert not killed.exists()
    assert in_flight.exists()
    assert (folder / "_manifest.json").exists()


def test_incomplete_uploads_of_killed_runs_are_aborted(moto_server: s3_server.MotoServer) -> None:
    client = moto_server.client()
    client.create_bucket(Bucket="debris")
    for key in ("x/proxy_list/dt=2026-11-20/f.csv.gz", "x/proxy_list/dt=2026-11-21/f.csv.gz"):
        client.create_multipart_upload(Bucket="debris", Key=key)
    destination = S3Destination(client, "debris", "x")

    # moto reports a fixed 2010 start for every upload, so the age rule is tested on disk
    # above; here: only the folder's own uploads are aborted.
    removed = destination.remove_debris("proxy_list/dt=2026-11-20", timedelta(hours=1))
    assert removed == ["x/proxy_list/dt=2026-11-20/f.csv.gz"]
    pending = client.list_multipart_uploads(Bucket="debris").get("Uploads", [])
    assert [upload["Key"] for upload in pending] == ["x/proxy_list/dt=2026-11-21/f.csv.gz"]
