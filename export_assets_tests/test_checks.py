"""``verify_exports_job`` proves a published partition against its manifest, on disk and S3.

A partition is exported through Dagster (its step proves it while writing), then tampered
with outside the exporter (as a person or a broken disk would), and then the deep re-read
runs: a run of ``verify_exports_job`` for that day, which exports nothing and records the
day's ``export_is_intact`` result.
"""

import gzip
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetSelection,
    DagsterInstance,
    ExecuteInProcessResult,
    materialize,
)

from export_assets.defs.exports import proxy_list
from export_assets.defs.exports.checks import verify_exports_job
from export_assets.defs.exports.daily import INTACT
from export_assets.defs.operations.failures import user_error
from export_assets.defs.resources.store import ExportStore
from export_assets_tests.conftest import configured, export_resources
from export_assets_tests.s3_server import MotoServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DAY = "2026-11-20"
PREFIX = "proxywhirl/daily"


def export_partition(
    resources: dict[str, Any], instance: DagsterInstance, fmt: str = "csv"
) -> ExecuteInProcessResult:
    """Materialize proxy_list for DAY; the check its step reports passes on a fresh export."""
    result = materialize(
        [configured(proxy_list, {"format": fmt})],
        partition_key=DAY,
        resources=resources,
        instance=instance,
    )
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == INTACT]
    assert evaluation.passed
    return result


def run_check_only(resources: dict[str, Any], instance: DagsterInstance) -> AssetCheckEvaluation:
    """Run the deep re-read of proxy_list for DAY alone; its export_is_intact evaluation."""
    result = verify_exports_job.execute_in_process(
        run_config={
            "ops": {
                "verify_published_exports": {
                    "config": {
                        "assets": ["proxy_list"],
                        "last_days": 1,
                        "end_date": DAY,
                    }
                }
            }
        },
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    assert result.get_asset_materialization_events() == []  # nothing was exported again
    evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name == INTACT]
    assert len(evaluations) == 1, f"no evaluation recorded: {step_errors(result)}"
    [evaluation] = evaluations
    assert evaluation.asset_key == proxy_list.key
    assert evaluation.partition == DAY
    # A failed partition fails the audit run.
    assert result.success is evaluation.passed, step_errors(result)
    return evaluation


def step_errors(result: ExecuteInProcessResult) -> list[str]:
    """The user error of each failed step, as ``Kind: message``."""
    errors = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        if error is not None:
            errors.append(user_error(error).message.strip())
    return errors


def problems(evaluation: AssetCheckEvaluation) -> list[str]:
    """The problems the check listed in its metadata, one per markdown bullet."""
    text = str(evaluation.metadata["problems"].value)
    return [] if text == "none" else [line.removeprefix("- ") for line in text.splitlines()]


def truncate(data: bytes) -> bytes:
    return data[: len(data) - 100]


def flip_a_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


def drop_the_last_row(data: bytes) -> bytes:
    """A well-formed csv.gz holding one row fewer (rows of the sample hold no line break at
    their end, so the last line is the last row)."""
    text = gzip.decompress(data).decode()
    return gzip.compress(text[: text.rstrip("\n").rfind("\n") + 1].encode(), mtime=0)


NAME = {"csv": f"proxy_list-{DAY}.csv.gz", "parquet": f"proxy_list-{DAY}.parquet"}
TAMPERING: dict[str, tuple[str, Callable[[bytes], bytes], Callable[[int], list[str]]]] = {
    # case: (format, what is done to the data file, problems expected given its size)
    "csv-truncated": (
        "csv",
        truncate,
        lambda size: [
            f"{NAME['csv']}: {size - 100} bytes, manifest says {size}",
            f"{NAME['csv']}: sha256 differs from the manifest",
            f"{NAME['csv']}: does not parse as csv: csv+gzip does not decompress: ",
        ],
    ),
    "csv-byte-flipped": (
        "csv",
        flip_a_byte,
        lambda size: [
            f"{NAME['csv']}: sha256 differs from the manifest",
            f"{NAME['csv']}: does not parse as csv: ",
        ],
    ),
    "csv-row-removed": (
        "csv",
        drop_the_last_row,
        lambda size: [
            f"{NAME['csv']}: ",  # bytes differ (how much depends on deflate)
            f"{NAME['csv']}: sha256 differs from the manifest",
            f"{NAME['csv']}: 79 rows, manifest says 80",
        ],
    ),
    "parquet-truncated": (
        "parquet",
        truncate,
        lambda size: [
            f"{NAME['parquet']}: {size - 100} bytes, manifest says {size}",
            f"{NAME['parquet']}: sha256 differs from the manifest",
            f"{NAME['parquet']}: does not parse as parquet: parquet is not a readable parquet "
            "file: ",
        ],
    ),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_a_tampered_data_file_fails_the_check(
    sample_deployment: Any, tmp_path: Path, instance: DagsterInstance, case: str
) -> None:
    fmt, tamper, expected = TAMPERING[case]
    exports = tmp_path / "exports"
    resources = export_resources(sample_deployment.database, exports)
    export_partition(resources, instance, fmt)
    path = exports / "proxy_list" / f"dt={DAY}" / NAME[fmt]
    original = path.read_bytes()
    path.write_bytes(tamper(original))
    tampered = path.read_bytes()

    evaluation = run_check_only(resources, instance)

    assert not evaluation.passed
    found = problems(evaluation)
    wanted = expected(len(original))
    assert len(found) == len(wanted), found
    for problem, start in zip(found, wanted, strict=True):
        assert problem.startswith(start), (problem, start)
    if case == "csv-row-removed":
        assert re.fullmatch(rf"{re.escape(NAME['csv'])}: \d+ bytes, manifest says \d+", found[0])
    assert evaluation.metadata["files"].value == 1
    assert evaluation.metadata["rows"].value == 80
    assert path.read_bytes() == tampered  # the check only reads


def test_a_missing_manifest_fails_the_check(
    sample_deployment: Any, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    resources = export_resources(sample_deployment.database, exports)
    export_partition(resources, instance)
    (exports / "proxy_list" / f"dt={DAY}" / "_manifest.json").unlink()

    evaluation = run_check_only(resources, instance)

    assert not evaluation.passed
    assert problems(evaluation) == [f"proxy_list {DAY} is not published: it has no manifest"]


def test_a_missing_data_file_fails_the_check_naming_it(
    sample_deployment: Any, tmp_path: Path, instance: DagsterInstance
) -> None:
    exports = tmp_path / "exports"
    resources = export_resources(sample_deployment.database, exports)
    export_partition(resources, instance)
    (exports / "proxy_list" / f"dt={DAY}" / NAME["csv"]).unlink()

    evaluation = run_check_only(resources, instance)

    assert not evaluation.passed
    assert any(NAME["csv"] in problem for problem in problems(evaluation))


def test_the_check_reads_through_s3_and_fails_on_a_tampered_object(
    sample_deployment: Any, tmp_path: Path, instance: DagsterInstance, moto_server: MotoServer
) -> None:
    client: S3Client = moto_server.client()
    bucket = f"exports-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    store = ExportStore(destination=f"s3://{bucket}/{PREFIX}", s3=moto_server.resource())
    resources = export_resources(sample_deployment.database, tmp_path / "unused", store=store)
    export_partition(resources, instance)
    key = f"{PREFIX}/proxy_list/dt={DAY}/{NAME['csv']}"

    untouched = run_check_only(resources, instance)
    assert untouched.passed
    assert problems(untouched) == []

    original = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=flip_a_byte(original))
    tampered = run_check_only(resources, instance)

    assert not tampered.passed
    assert f"{NAME['csv']}: sha256 differs from the manifest" in problems(tampered)
    assert not (tmp_path / "unused").exists()


def test_executing_only_the_checks_re_reads_the_partition(
    sample_deployment: Any, tmp_path: Path, instance: DagsterInstance
) -> None:
    """The UI's "Execute checks" on an export: its step re-reads instead of exporting."""
    exports = tmp_path / "exports"
    resources = export_resources(sample_deployment.database, exports)
    export_partition(resources, instance)
    path = exports / "proxy_list" / f"dt={DAY}" / NAME["csv"]
    path.write_bytes(flip_a_byte(path.read_bytes()))

    result = materialize(
        [proxy_list],
        selection=AssetSelection.checks_for_assets(proxy_list),
        tags={"dagster/partition": DAY},
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )

    assert result.get_asset_materialization_events() == []  # nothing was exported again
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == INTACT]
    assert evaluation.partition == DAY
    assert not evaluation.passed
    assert f"{NAME['csv']}: sha256 differs from the manifest" in problems(evaluation)
    assert not result.success  # blocking
