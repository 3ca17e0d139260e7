"""The audit trail, read back from Dagster's instance: who exported what, when, where, and how.

Every materialization of an export carries its facts as metadata (uri, rows, bytes,
sha256, credential policy) and its run carries the tags ``export/requested_by`` and
``export/template``. Failed runs are part of the trail too: one record per failed step.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunsFilter,
)

from export_assets.defs.operations.failures import error_message, user_error

REQUESTED_BY_TAG = "export/requested_by"
TEMPLATE_TAG = "export/template"
PARTITION_TAG = "dagster/partition"
# Dagster's tags of a run over a range of partitions, and of a backfill's runs.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
BACKFILL_TAG = "dagster/backfill"
PAGE = 500

HISTORY_FIELDS = (
    "time",
    "requested_by",
    "job",
    "run_id",
    "status",
    "asset",
    "partition",
    "uri",
    "rows",
    "bytes",
    "sha256",
    "credential_policy",
    "error",
)


@dataclass(frozen=True)
class HistoryRecord:
    """One line of the audit trail: a materialization, or a failed step of a run."""

    time: str  # ISO-8601 UTC, microseconds (sorts as text)
    requested_by: str
    job: str
    run_id: str
    status: str  # the run's status: success, failure, started, ...
    asset: str
    partition: str
    uri: str
    rows: int | None
    bytes: int | None
    sha256: str
    credential_policy: str
    error: str  # first line of the failed step's error; empty for a materialization

    def as_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict, in HISTORY_FIELDS order."""
        return asdict(self)


def requested_by(run: DagsterRun | None) -> str:
    """Who asked for the run: its ``export/requested_by`` tag, a schedule or sensor, or unknown."""
    if run is None:
        return "unknown"
    tags = run.tags
    return (
        tags.get(REQUESTED_BY_TAG)
        or tags.get("dagster/user")
        or tags.get("dagster/schedule_name")
        or tags.get("dagster/sensor_name")
        or "unknown"
    )


def export_history(
    instance: DagsterInstance,
    *,
    asset: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[HistoryRecord]:
    """Materializations and failed steps, oldest first, optionally one asset and a time range."""
    runs: dict[str, DagsterRun | None] = {}

    def run_of(run_id: str) -> DagsterRun | None:
        if run_id not in runs:
            runs[run_id] = instance.get_run_by_id(run_id)
        return runs[run_id]

    records = list(_materializations(instance, asset, since, until, run_of))
    records += _failures(instance, asset, since, until)
    return sorted(records, key=lambda r: (r.time, r.run_id, r.asset))


def _asset_keys(instance: DagsterInstance, asset: str | None) -> list[AssetKey]:
    if asset is not None:
        return [AssetKey.from_user_string(asset)]
    return sorted(instance.get_asset_keys(), key=lambda key: key.to_user_string())


def _materializations(
    instance: DagsterInstance,
    asset: str | None,
    since: datetime | None,
    until: datetime | None,
    run_of: Any,
) -> Iterator[HistoryRecord]:
    for key in _asset_keys(instance, asset):
        cursor: str | None = None
        while True:
            result = instance.fetch_materializations(
                AssetRecordsFilter(
                    asset_key=key,
                    after_timestamp=since.timestamp() if since else None,
                    before_timestamp=until.timestamp() if until else None,
                ),
                limit=PAGE,
                cursor=cursor,
                ascending=True,
            )
            for record in result.records:
                materialization = record.asset_materialization
                if materialization is None:
                    continue
                run = run_of(record.run_id)
                metadata = {k: v.value for k, v in materialization.metadata.items()}
                yield HistoryRecord(
                    time=_iso(record.timestamp),
                    requested_by=requested_by(run),
                    job=_job(run),
                    run_id=record.run_id,
                    status=_status(run),
                    asset=key.to_user_string(),
                    partition=materialization.partition or "",
                    uri=str(metadata.get("dagster/uri", "")),
                    rows=_rows(metadata),
                    bytes=_int(metadata.get("bytes")),
                    sha256=str(metadata.get("sha256", "")),
                    credential_policy=str(metadata.get("credential_policy", "")),
                    error="",
                )
            if not result.has_more:
                break
            cursor = result.cursor


def _failures(
    instance: DagsterInstance, asset: str | None, since: datetime | None, until: datetime | None
) -> list[HistoryRecord]:
    records: list[HistoryRecord] = []
    for run_record in instance.get_run_records(
        RunsFilter(statuses=[DagsterRunStatus.FAILURE], updated_after=since, created_before=until)
    ):
        run = run_record.dagster_run
        when = run_record.end_time or run_record.update_timestamp.timestamp()
        for step_asset, message in failed_steps(instance, run.run_id):
            if asset is not None and step_asset != asset:
                continue
            records.append(
                HistoryRecord(
                    time=_iso(when),
                    requested_by=requested_by(run),
                    job=_job(run),
                    run_id=run.run_id,
                    status=_status(run),
                    asset=step_asset,
                    partition=run.tags.get(PARTITION_TAG, ""),
                    uri="",
                    rows=None,
                    bytes=None,
                    sha256="",
                    credential_policy="",
                    error=message,
                )
            )
    if since is not None:
        records = [r for r in records if r.time >= _iso(since.timestamp())]
    if until is not None:
        records = [r for r in records if r.time < _iso(until.timestamp())]
    return records


def failed_steps(instance: DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    """(asset, first line of its error) per failed step of a run; ("", why) if none failed."""
    failed: list[tuple[str, str]] = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        error = event.step_failure_data.error
        message = "" if error is None else _first_line(error_message(user_error(error)))
        failed.append((event.step_key.replace("__", "/"), message))
    if not failed:
        failures = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
        text = (failures[-1].message if failures else "") or "the run failed"
        failed = [("", _first_line(text))]
    return failed


def exported_assets(instance: DagsterInstance, run_id: str) -> list[dict[str, Any]]:
    """What a run materialized: asset, partition, uri, rows, bytes, sha256."""
    exported: list[dict[str, Any]] = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        event = entry.dagster_event
        materialization = None if event is None else event.step_materialization_data.materialization
        if materialization is None:
            continue
        metadata = {k: v.value for k, v in materialization.metadata.items()}
        exported.append(
            {
                "asset": materialization.asset_key.to_user_string(),
                "partition": materialization.partition,
                "uri": str(metadata.get("dagster/uri", "")),
                "rows": _rows(metadata),
                "bytes": _int(metadata.get("bytes")),
                "sha256": str(metadata.get("sha256", "")),
            }
        )
    return exported


def _job(run: DagsterRun | None) -> str:
    if run is None:
        return ""
    return run.tags.get(TEMPLATE_TAG) or run.job_name


def _status(run: DagsterRun | None) -> str:
    return "unknown" if run is None else run.status.value.lower()


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else ""


def history_rows(records: list[HistoryRecord]) -> list[Mapping[str, Any]]:
    """Records as dicts (JSON lines, the audit log asset)."""
    return [record.as_dict() for record in records]


def _rows(metadata: Mapping[str, Any]) -> int | None:
    """A materialization's row count (``dagster/row_count`` before partitions had their key)."""
    return _int(metadata.get("dagster/partition_row_count", metadata.get("dagster/row_count")))
