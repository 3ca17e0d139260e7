"""What an in-process export of validation events loads and holds (issue 14, targets 4-5).

pandas (some 35 MiB and 0.4 s to import) is no dependency of an export, but
pyarrow imports it the first time it is handed a Python value (``pa.array``, ``pa.scalar``,
a compute function given a ``str``) and ADBC's DB-API layer imports it through
``pyarrow.dataset``. These tests run the export in a fresh interpreter and look at
``sys.modules`` afterwards; the figures themselves are ``make bench``'s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from export_assets.lib.exports.formats import FALSE, null_scalar, text_scalar
from export_assets.lib.exports.memory import use_system_allocator
from export_assets.lib.sample import SampleDeployment
from export_assets.lib.source.database import SourceSnapshot
from export_assets.lib.source.validations import (
    _parameters,
    arrow_batches,
    arrow_connection,
    validation_events,
    validation_id_range,
)
from export_assets_tests.conftest import SAMPLE_END

# Reads the sample's last day as validation_events does, writes it in each text format and
# Parquet through the gzip codec with the leak scan on, and reports what got imported.
_EXPORT_IN_A_FRESH_PROCESS = textwrap.dedent(
    """
    import io, json, sys
    from datetime import date
    from pathlib import Path

    from export_assets.lib.exports import codecs, formats
    from export_assets.lib.exports.export import ExportOptions
    from export_assets.lib.exports.streams import MeasuredStream
    from export_assets.lib.exports.verify import TextScan, scan_batch
    from export_assets.lib.security.leaks import LeakScanner
    from export_assets.lib.source.database import SourceSnapshot
    from export_assets.lib.source import validations

    database, day = Path(sys.argv[1]), date.fromisoformat(sys.argv[2])
    before = "pandas" in sys.modules
    outputs = {}
    for fmt, compression in (("csv", "gzip"), ("jsonl", "gzip"), ("parquet", "none")):
        options = ExportOptions(format=fmt, compression=compression)
        with SourceSnapshot(database, busy_timeout_ms=5000, batch_rows=256,
                            chunk_rows=100, identities=False) as snapshot:
            ids = validations.validation_id_range(snapshot, day)
            batches = validations.read_ahead(validations.validation_events(snapshot, day, ids))
            scanner = LeakScanner(["no-such-secret"])
            stored = MeasuredStream(io.BytesIO(), hashed=True)
            findings, rows = [], 0
            with codecs.compressed(stored, options, entry_name="x") as compressed:
                plain = MeasuredStream(compressed)
                text = TextScan(scanner, "x") if fmt != "parquet" else None
                if text is not None:
                    plain.tap = text.feed
                writer = formats.open_format_writer(
                    plain, validations.VALIDATION_EVENTS_SCHEMA, options
                )
                for batch in batches:
                    if text is None:
                        findings += scan_batch(scanner, "x", batch, rows + 1)
                    writer.write(batch)
                    rows += batch.num_rows
                writer.close()
                if text is not None:
                    findings += text.finish()
            batches.close()
        outputs[fmt] = {"rows": rows, "bytes": stored.bytes, "findings": len(findings)}
    print(json.dumps({"pandas_before": before, "pandas_after": "pandas" in sys.modules,
                      "outputs": outputs}))
    """
)


def test_an_export_of_validation_events_never_imports_pandas(
    sample_deployment: SampleDeployment,
) -> None:
    """Read (ADBC), format (csv, jsonl, parquet), compress and scan: pandas stays out."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _EXPORT_IN_A_FRESH_PROCESS,
            str(sample_deployment.database),
            SAMPLE_END.isoformat(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["pandas_before"] is False
    assert report["pandas_after"] is False, "something on the export's path imported pandas"
    outputs = report["outputs"]
    for fmt, output in outputs.items():
        assert output["rows"] > 0, fmt
        assert output["bytes"] > 0, fmt
    # Unmasked here: the sample's user:pass@ URLs are found, in every format alike.
    assert len({output["findings"] for output in outputs.values()}) == 1
    assert len({output["rows"] for output in outputs.values()}) == 1


def test_scalars_built_from_buffers_equal_pyarrows_own() -> None:
    """The writers' scalars are the values ``pa.scalar`` would make (here, where importing
    pandas no longer matters)."""
    for value in ("", "Z", '"', "null", "é\n✓"):
        assert text_scalar(value).equals(pa.scalar(value, pa.string()))
        assert text_scalar(value, pa.large_string()).equals(pa.scalar(value, pa.large_string()))
    assert FALSE.equals(pa.scalar(False))
    for kind in (pa.float64(), pa.string(), pa.timestamp("us", tz="UTC")):
        null = null_scalar(kind)
        assert null.type == kind
        assert not null.is_valid


def test_statement_parameters_keep_their_values_and_types() -> None:
    """Parameters are bound as one row of typed columns, built without ``pa.array``."""
    batch = _parameters([7, -(2**63), "2026-11-20", "é", 1.5, True, b"\x00\x01", None])
    assert batch.num_rows == 1
    assert batch.to_pylist()[0] == {
        "0": 7,
        "1": -(2**63),
        "2": "2026-11-20",
        "3": "é",
        "4": 1.5,
        "5": 1,
        "6": b"\x00\x01",
        "7": None,
    }
    assert batch.schema.types == [
        pa.int64(),
        pa.int64(),
        pa.string(),
        pa.string(),
        pa.float64(),
        pa.int64(),
        pa.binary(),
        pa.null(),
    ]


def test_a_parameter_of_an_unknown_type_is_named() -> None:
    with pytest.raises(TypeError, match=r"a statement parameter of type date: datetime.date"):
        _parameters([date(2026, 11, 20)])


def test_a_range_is_read_in_batches_no_longer_than_the_range(
    sample_deployment: SampleDeployment,
) -> None:
    """The driver reserves a whole batch per column before reading: a short id range asks
    for a batch of its own length, not the snapshot's ``batch_rows``. The rows come out the
    same, re-cut to ``batch_rows``."""
    day = SAMPLE_END
    with SourceSnapshot(
        sample_deployment.database, busy_timeout_ms=5000, batch_rows=4096, identities=False
    ) as snapshot:
        ids = validation_id_range(snapshot, day)
        assert ids is not None
        low = ids[0]
        sql = "SELECT id FROM validation_results WHERE id >= ? AND id <= ? ORDER BY id"
        with arrow_connection(snapshot) as connection:
            raws = arrow_batches(snapshot, connection, sql, [low, low + 9], (low, low + 9))
        assert [raw.num_rows for raw in raws] == [10]
        batches = list(validation_events(snapshot, day, ids))
    assert sum(batch.num_rows for batch in batches) == ids[1] - ids[0] + 1
    assert all(batch.num_rows == 4096 for batch in batches[:-1])


# A run as the code location makes it: Dagster's materialize() of the daily record, the IO
# manager scanning for the deployment's credentials.
_MATERIALIZE_IN_A_FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    from dagster import DagsterInstance, materialize
    from export_assets.defs.exports import proxy_list, validation_events
    from export_assets.defs.resources.io_manager import ExportIOManager
    from export_assets.defs.resources.store import ExportStore
    from export_assets.defs.resources.proxywhirl import ProxyWhirlSource

    database, day, out = sys.argv[1], sys.argv[2], sys.argv[3]
    source = ProxyWhirlSource(database=database)
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [validation_events, proxy_list], partition_key=day, instance=instance,
            resources={
                "proxywhirl": source,
                "io_manager": ExportIOManager(
                    store=ExportStore(destination=out), proxywhirl=source
                ),
            },
        )
    import pyarrow as pa
    from export_assets.lib.exports import memory
    print(json.dumps({"success": result.success, "pandas": "pandas" in sys.modules,
                      "parquet": "pyarrow.parquet" in sys.modules,
                      "allocator": pa.default_memory_pool().backend_name,
                      "final_collection": not memory._FREEZE_AT_EXIT}))
    """
)


def test_a_run_of_the_daily_record_never_imports_pandas(
    sample_deployment: SampleDeployment, tmp_path: Path
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _MATERIALIZE_IN_A_FRESH_PROCESS,
            str(sample_deployment.database),
            SAMPLE_END.isoformat(),
            str(tmp_path / "exports"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path(__file__).parents[1],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # csv.gz exports load no Parquet (nor pyarrow.fs with it), allocate Arrow memory with
    # malloc, and the process ends without a last collection (export_assets/lib/exports/memory.py).
    assert report == {
        "success": True,
        "pandas": False,
        "parquet": False,
        "allocator": "system",
        "final_collection": False,
    }


@pytest.mark.parametrize(("environment", "pool"), [(None, "system"), ("mimalloc", "mimalloc")])
def test_arrow_allocates_with_malloc_from_the_import_on(environment: str | None, pool: str) -> None:
    """Importing the package makes malloc Arrow's default pool before pyarrow first needs
    one (mimalloc kept ~3 MiB of what it held before an export switched); a pool the
    environment names is kept."""
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if environment is not None:
        env["ARROW_DEFAULT_MEMORY_POOL"] = environment
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import export_assets.definitions, pyarrow as pa;"
            " print(pa.default_memory_pool().backend_name)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=env,
    )
    assert result.stdout.split()[-1] == pool


def test_the_system_allocator_is_taken_once_and_kept() -> None:
    chosen = pa.default_memory_pool()
    try:
        pa.set_memory_pool(pa.mimalloc_memory_pool())
        use_system_allocator()
        assert pa.default_memory_pool().backend_name == "system"
        use_system_allocator()  # again: nothing changes
        assert pa.default_memory_pool().backend_name == "system"
    finally:
        pa.set_memory_pool(chosen)


_EXIT_WITH_A_CYCLE = textwrap.dedent(
    """
    import gc, os, sys
    from export_assets.lib.exports.memory import skip_the_final_collection

    gc.disable()  # only the interpreter's last collection could find the cycle

    class Cycle:
        def __del__(self, write=os.write):
            write(1, b"collected at exit")

    cycle = Cycle()
    cycle.me = cycle
    del cycle
    if sys.argv[1] == "skip":
        skip_the_final_collection()
        skip_the_final_collection()  # idempotent
    """
)


@pytest.mark.parametrize(("argument", "collected"), [("keep", True), ("skip", False)])
def test_a_process_that_wrote_an_export_ends_without_a_last_collection(
    argument: str, collected: bool
) -> None:
    """The interpreter's last collection (0.8 s of a 1M-row export's process) is skipped
    once an export ran; without it, the same process collects its cycles at exit."""
    result = subprocess.run(
        [sys.executable, "-c", _EXIT_WITH_A_CYCLE, argument],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert ("collected at exit" in result.stdout) is collected
