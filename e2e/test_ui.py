"""End to end on the real stack: `dagster dev` (webserver + daemon), GraphQL, headless Chromium.

One `dagster dev -w workspace.yaml` on 127.0.0.1 with a temporary DAGSTER_HOME and a sample
deployment. Through the GraphQL API: a 3-day backfill of daily_export_job (run by the daemon)
and one on-demand requests/proxy_list run with options (xlsx, filtered), which writes beside
the daily record, never over it. Then every manifest and file is verified, run history is
read back with its tags, and Chromium looks at the UI.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

from e2e.stack import (
    BACKFILL_DAYS,
    BIN,
    HOST,
    LAUNCH_BACKFILL,
    REQUESTED_BY,
    REQUESTED_BY_TAG,
    ROOT,
    SAMPLE_END,
    Process,
    base_env,
    free_port,
    graphql,
    http_ok,
    running,
    start,
    verify_partition,
    wait_for,
    write_sample,
)
from export_assets.defs.exports.daily import DAYS_PER_BACKFILL_RUN

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:gql")

LOCATION = "export_assets"
REPOSITORY = "__repository__"
JOB = "daily_export_job"
SINGLE_PARTITION = SAMPLE_END
SINGLE_PROTOCOLS = ["socks5", "http"]
# The asset page's runs: the code location's implicit asset job.
ASSET_JOB = "__ASSET_JOB"
REQUEST = "ui-request"
RUN_TIMEOUT_SECONDS = 600.0
TERMINAL = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}

BACKFILL = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status partitionNames runs(limit: 50) { runId status } }
  }
}"""
LOCATION_LOADED = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename } } } } }"""
JOB_ASSETS = """
{ assetNodes { assetKey { path } jobNames } }"""
RUNS_BY_TAG = """
query($key: String!, $value: String!) {
  runsOrError(filter: {tags: [{key: $key, value: $value}]}) {
    ... on Runs { results { runId jobName status tags { key value } } }
  }
}"""


@dataclass
class Stack:
    port: int
    home: Path
    exports: Path
    client: DagsterGraphQLClient
    processes: list[Process]

    def query(self, text: str, variables: dict[str, Any] | None = None) -> Any:
        return graphql(self.port, text, variables)


@dataclass
class Launched:
    stack: Stack
    backfill_id: str
    backfill_runs: list[dict[str, Any]]
    single_run_id: str
    job_assets: list[str]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`dagster dev` on a free port, temporary home and sample; stopped (group-killed) after."""
    base = tmp_path_factory.mktemp("e2e-ui")
    home = base / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    database = write_sample(base / "proxywhirl")
    exports = base / "exports"
    env = base_env(home, database, exports)
    # A short partition range keeps the UI's partition bars readable in the screenshots.
    env["EXPORT_PARTITION_START"] = "2026-11-01"
    port = free_port()
    with running([]) as processes:
        dev = start(
            "dagster-dev",
            [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", HOST, "-p", str(port)],
            env,
            base / "logs",
        )
        processes.append(dev)
        wait_for("the webserver", lambda: http_ok(f"http://{HOST}:{port}/server_info"), 180, [dev])
        client = DagsterGraphQLClient(HOST, port_number=port)
        stack = Stack(port, home, exports, client, processes)
        wait_for("the code location", lambda: _location_loaded(stack), 180, [dev])
        yield stack


def _location_loaded(stack: Stack) -> bool | None:
    entries = stack.query(LOCATION_LOADED)["workspaceOrError"]["locationEntries"]
    for entry in entries:
        if entry["name"] == LOCATION and entry["loadStatus"] == "LOADED":
            kind = entry["locationOrLoadError"]["__typename"]
            assert kind == "RepositoryLocation", f"{LOCATION} failed to load: {kind}"
            return True
    return None


@pytest.fixture(scope="module")
def launched(stack: Stack) -> Launched:
    """The backfill and the single run, launched through GraphQL and waited for."""
    result = stack.query(
        LAUNCH_BACKFILL,
        {
            "params": {
                "selector": {
                    "partitionSetName": f"{JOB}_partition_set",
                    "repositorySelector": {
                        "repositoryLocationName": LOCATION,
                        "repositoryName": REPOSITORY,
                    },
                },
                "partitionNames": list(BACKFILL_DAYS),
                "tags": [{"key": REQUESTED_BY_TAG, "value": REQUESTED_BY}],
                "runConfigData": {},  # as the UI sends it: the jobs' own default executor
            }
        },
    )["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    backfill_id = result["backfillId"]

    single_run_id = stack.client.submit_job_execution(
        ASSET_JOB,
        repository_location_name=LOCATION,
        repository_name=REPOSITORY,
        run_config={
            "ops": {
                "requests__proxy_list": {
                    "config": {"request": REQUEST, "format": "xlsx", "protocols": SINGLE_PROTOCOLS}
                }
            }
        },
        tags={"dagster/partition": SINGLE_PARTITION, REQUESTED_BY_TAG: REQUESTED_BY},
        asset_selection=[["requests", "proxy_list"]],
    )

    def backfill_done() -> list[dict[str, Any]] | None:
        backfill = stack.query(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        runs: list[dict[str, Any]] = backfill["runs"]
        finished = backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING")
        if finished and all(run["status"] in {s.value for s in TERMINAL} for run in runs):
            return runs
        return None

    runs = wait_for(f"backfill {backfill_id}", backfill_done, RUN_TIMEOUT_SECONDS, stack.processes)
    status = wait_for(
        f"run {single_run_id}",
        lambda: s if (s := stack.client.get_run_status(single_run_id)) in TERMINAL else None,
        RUN_TIMEOUT_SECONDS,
        stack.processes,
    )
    assert status == DagsterRunStatus.SUCCESS, f"single run {single_run_id} ended {status}"
    job_assets = sorted(
        "/".join(node["assetKey"]["path"])
        for node in stack.query(JOB_ASSETS)["assetNodes"]
        if JOB in node["jobNames"]
    )
    return Launched(stack, backfill_id, runs, single_run_id, job_assets)


def test_backfill_runs_ranged_runs_that_succeed(launched: Launched) -> None:
    # A backfill run covers up to DAYS_PER_BACKFILL_RUN days, each its own partition.
    runs = -(-len(BACKFILL_DAYS) // DAYS_PER_BACKFILL_RUN)
    assert len(launched.backfill_runs) == runs
    assert {run["status"] for run in launched.backfill_runs} == {"SUCCESS"}


def test_every_manifest_and_file_of_the_backfill_verifies(launched: Launched) -> None:
    assert {"proxy_list", "validation_events", "pool_config"} <= set(launched.job_assets)
    for day in BACKFILL_DAYS:
        for asset in launched.job_assets:
            manifest = verify_partition(launched.stack.exports, asset, day)
            assert manifest["run_id"] in {run["runId"] for run in launched.backfill_runs}


def test_single_run_wrote_a_filtered_spreadsheet(launched: Launched) -> None:
    request = f"requests/{REQUEST}/proxy_list"
    manifest = verify_partition(launched.stack.exports, request, SINGLE_PARTITION)
    assert (manifest["run_id"], manifest["format"]) == (launched.single_run_id, "xlsx")
    folder = launched.stack.exports / request / f"dt={SINGLE_PARTITION}"
    workbook = openpyxl.load_workbook(folder / manifest["files"][0]["path"], read_only=True)
    rows = [row for sheet in workbook.worksheets for row in sheet.iter_rows(values_only=True)]
    header, body = rows[0], rows[1:]
    assert len(body) == manifest["total_rows"] > 0
    protocols = {row[header.index("protocol")] for row in body}
    assert protocols, "the filtered spreadsheet is empty"
    assert protocols <= set(SINGLE_PROTOCOLS)
    # Only the request ran for that day: no daily record was published for it.
    for asset in launched.job_assets:
        assert not (launched.stack.exports / asset / f"dt={SINGLE_PARTITION}").exists(), asset


def test_run_history_shows_the_runs_with_their_tags(launched: Launched) -> None:
    runs = launched.stack.query(RUNS_BY_TAG, {"key": REQUESTED_BY_TAG, "value": REQUESTED_BY})
    results = runs["runsOrError"]["results"]
    by_id = {run["runId"]: run for run in results}
    expected = {run["runId"] for run in launched.backfill_runs} | {launched.single_run_id}
    assert set(by_id) == expected
    partitions = set()
    for run in results:
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        single = run["runId"] == launched.single_run_id
        assert (run["jobName"], run["status"]) == (ASSET_JOB if single else JOB, "SUCCESS")
        assert tags[REQUESTED_BY_TAG] == REQUESTED_BY
        if run["runId"] == launched.single_run_id:
            partitions.add(tags["dagster/partition"])
        else:  # a ranged backfill run: its first and last day
            assert tags["dagster/backfill"] == launched.backfill_id
            partitions.add(tags["dagster/asset_partition_range_start"])
            partitions.add(tags["dagster/asset_partition_range_end"])
    assert partitions == {BACKFILL_DAYS[0], BACKFILL_DAYS[-1], SINGLE_PARTITION}


def test_the_ui_shows_the_materialized_partitions(launched: Launched, output_dir: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `apt-get install chromium` (make e2e does)"
    base = f"http://{HOST}:{launched.stack.port}"
    with sync_playwright() as playwright:
        # --no-sandbox: Chromium's sandbox cannot start as root (CI containers).
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            # Tall enough that the catalog renders every row (records, templates, requests,
            # the source): it draws only the rows in view.
            page = browser.new_page(viewport={"width": 1440, "height": 3000})
            page.goto(f"{base}/assets", wait_until="networkidle")
            for asset in launched.job_assets:
                # The catalog row: success, missing, failed counts, then "N partitions".
                row = page.locator(
                    f"xpath=//a[@href='/assets/{asset}']"
                    "/ancestor::*[contains(normalize-space(.), ' partitions')][1]"
                )
                expect(row).to_contain_text(re.compile(r"\d+ partitions"), timeout=60_000)
                expected = len(BACKFILL_DAYS)
                assert _materialized_in_catalog(row.inner_text()) == expected, (
                    f"catalog row of {asset}: {row.inner_text()!r}"
                )
            page.screenshot(path=output_dir / "asset-catalog.png", full_page=True)

            page.goto(f"{base}/assets/proxy_list?view=partitions", wait_until="networkidle")
            # proxy_list: the three backfilled days (the request is an asset of its own).
            materialized = len(BACKFILL_DAYS)
            expect(page.get_by_text(f"Materialized ({materialized})")).to_be_visible(timeout=60_000)
            expect(page.get_by_text("Failed (0)")).to_be_visible()
            page.screenshot(path=output_dir / "proxy_list-partitions.png", full_page=True)
        finally:
            browser.close()
    print(f"screenshots in {output_dir}")


def _materialized_in_catalog(row_text: str) -> int:
    """The first count of a catalog row's status cell (materialized), before "N partitions"."""
    lines = [line.strip() for line in row_text.splitlines()]
    end = next(i for i, line in enumerate(lines) if re.fullmatch(r"\d+ partitions", line))
    counts = [line for line in lines[:end] if line.isdigit()]
    assert len(counts) >= 3, f"no status counts in {row_text!r}"
    return int(counts[-4 if len(counts) >= 4 else 0])
