"""Loading the code location imports only what every run uses (issue 14, start-up).

Each check runs a fresh interpreter (the test process itself has imported everything):
loading ``export_assets.definitions`` and resolving its repository must not import the S3
stack, pandas, or the report and workbook libraries; an ``s3://`` destination still opens
and works in such a process, importing the S3 stack then.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.defs.resources.store import ExportStore
from export_assets_tests import s3_server
from export_assets_tests.s3_server import MotoServer

ROOT = Path(__file__).resolve().parent.parent

# Loads the code location as a code server does, then reports the top-level packages loaded.
_LOAD = """\
import json, sys
from export_assets.definitions import defs
defs.get_repository_def().get_all_jobs()
def loaded():
    return sorted({m.split(".")[0] for m in sys.modules})
"""

# Packages imported by files outside this change, and which file does it: the mark flips
# (strict) as soon as that import is made lazy.


def run_python(code: str, **environment: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter at the project root; its last stdout line is JSON."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.pop("EXPORT_DESTINATION", None)
    env.update(environment)
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def fresh_process(moto_server: MotoServer) -> dict[str, Any]:
    """One fresh process: the top-level packages loaded once the location is loaded
    (``before``), then those loaded once it opened an ``s3://`` destination and wrote and read
    through it (``after``), with what it read."""
    # Configured only by the environment, as EXPORT_DESTINATION=s3://... with AWS_* is.
    moto_server.client().create_bucket(Bucket="on-demand")
    code = _LOAD + (
        "import os\n"
        "before = loaded()\n"
        "from export_assets.defs.resources.store import ExportStore\n"
        "destination = ExportStore(destination=os.environ['EXPORT_DESTINATION']).open()\n"
        "with destination.open_write('probe/dt=2026-11-20/hello.txt') as stream:\n"
        "    stream.write(b'hello')\n"
        "print(json.dumps({'before': before, 'after': loaded(),\n"
        "    'uri': destination.uri('probe/dt=2026-11-20/hello.txt'),\n"
        "    'read': destination.read_bytes('probe/dt=2026-11-20/hello.txt').decode(),\n"
        "    'missing': destination.read_bytes('probe/absent.txt')}))\n"
    )
    return run_python(
        code,
        EXPORT_DESTINATION="s3://on-demand/exports",
        AWS_ENDPOINT_URL_S3=moto_server.endpoint_url,
        AWS_DEFAULT_REGION=s3_server.REGION,
        AWS_ACCESS_KEY_ID=s3_server.ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=s3_server.SECRET_ACCESS_KEY,
    )


@pytest.mark.parametrize(
    "package",
    [
        "boto3",
        "botocore",
        "dagster_aws",
        "s3transfer",
        "pandas",
        "openpyxl",
        "reportlab",
        "cryptography",
    ],
)
def test_loading_the_code_location_does_not_import(
    fresh_process: dict[str, Any], package: str
) -> None:
    assert package not in fresh_process["before"]
    assert "dagster" in fresh_process["before"]  # the probe did load the location


def test_an_s3_destination_imports_the_s3_stack_on_demand(
    fresh_process: dict[str, Any], moto_server: MotoServer
) -> None:
    result = fresh_process
    assert not {"boto3", "dagster_aws"} & set(result["before"])
    assert {"boto3", "botocore", "dagster_aws"} <= set(result["after"])
    assert result["uri"] == "s3://on-demand/exports/probe/dt=2026-11-20/hello.txt"
    assert result["read"] == "hello"
    assert result["missing"] is None  # botocore's ClientError, imported lazily, is handled
    # An independent reader sees the object the fresh process wrote.
    body = moto_server.client().get_object(
        Bucket="on-demand", Key="exports/probe/dt=2026-11-20/hello.txt"
    )["Body"]
    assert body.read() == b"hello"


def test_an_s3_resource_passed_in_is_used(moto_server: MotoServer) -> None:
    moto_server.client().create_bucket(Bucket="passed-in")
    store = ExportStore(destination="s3://passed-in/team", s3=moto_server.resource())
    destination = store.open()
    with destination.open_write("a/b.txt") as stream:
        stream.write(b"data")
    assert destination.read_bytes("a/b.txt") == b"data"
    assert store.s3_resource().endpoint_url == moto_server.endpoint_url


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (ProxyWhirlSource(), "ProxyWhirlSource"),
        ({"region_name": "eu-west-1"}, "dict"),
        ("eu-west-1", "str"),
    ],
)
def test_something_else_as_the_s3_resource_is_refused(
    tmp_path: Path, value: Any, kind: str
) -> None:
    with pytest.raises(ValueError, match="not an S3 resource") as caught:
        ExportStore(destination=str(tmp_path / "exports"), s3=value)
    message = str(caught.value)
    assert f"s3 is a {kind}, not an S3 resource" in message
    assert "dagster_aws.s3.S3Resource(region_name=..., endpoint_url=...)" in message
    assert "leave s3 unset" in message
    assert not (tmp_path / "exports").exists()  # nothing was created


@pytest.mark.slow
def test_the_start_up_benchmark_measures_every_case() -> None:
    # Timing is not asserted (benchmarks are not tests): the driver, its children and table work.
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "startup.py"), "--repeat", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rows = {
        cells[0]: cells
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| case")
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }
    assert len(rows) == 7
    anchor = rows["anchor: trivial one-asset location (resolve the repository)"]
    assert anchor[5:9] == ["1.00", "1.00", "1.00", "+0"]  # every ratio is against it
    loaded = rows["load export_assets (resolve the repository)"][-1]
    assert not {"boto3", "dagster_aws"} & set(loaded.split(", "))
    s3 = rows["load export_assets, then open an `s3://` destination (client only)"][-1]
    assert {"boto3", "dagster_aws"} <= set(s3.split(", "))


def test_library_code_does_not_import_dagster() -> None:
    """Every module of ``export_assets.lib`` (and the settings) imports without Dagster:
    library code is usable and testable on its own; ``export_assets.defs`` wires it."""
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "export_assets" / "lib").rglob("*.py")
    )
    assert len(modules) > 40, modules  # the walk found the library
    code = (
        "import importlib, json, sys\n"
        f"for name in {[*modules, 'export_assets.settings']!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0].startswith('dagster'))))"
    )
    assert list(run_python(code)) == []  # the Dagster modules loaded: none
