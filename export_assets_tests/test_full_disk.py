"""A full disk fails the export with a clear message and keeps the previous version."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from export_assets.defs.exports import proxy_list
from export_assets.defs.operations.failures import user_error
from export_assets.lib.sample import SampleDeployment
from export_assets_tests.conftest import SAMPLE_END, configured, export_resources

PARTITION = SAMPLE_END.isoformat()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 512 KiB filesystem (tmpfs); needs the right to mount, as root has."""
    mountpoint = tmp_path / "small_disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_a_full_disk_is_named_and_the_previous_export_survives(
    sample_deployment: SampleDeployment, small_disk: Path, instance: DagsterInstance
) -> None:
    exports = small_disk / "exports"
    resources = export_resources(sample_deployment.database, exports)
    assert materialize(
        [proxy_list], partition_key=PARTITION, resources=resources, instance=instance
    ).success
    folder = exports / "proxy_list" / f"dt={PARTITION}"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    descriptor = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:  # take every free block
        while os.write(descriptor, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(descriptor)

    result = materialize(
        [configured(proxy_list, {"format": "jsonl", "compression": "none"})],
        partition_key=PARTITION,
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None
    error = user_error(failure)
    assert error.cls_name == "DestinationError"
    assert "no space left on the device" in error.message
    assert "set EXPORT_DESTINATION elsewhere" in error.message
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
