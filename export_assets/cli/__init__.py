"""``export-assets``: the verbs Dagster has no command for (sample data, batch materialize)."""

from __future__ import annotations

import getpass
import logging
import sys
import traceback
import warnings
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from dagster import DagsterInstance, ExecuteInProcessResult, MetadataValue

REQUESTED_BY_TAG = "export/requested_by"
TEMPLATE_TAG = "export/template"


def requesting_user() -> str:
    """Who runs the CLI: ``EXPORT_REQUESTED_BY``, else the login name."""
    from export_assets.settings import current_settings

    return current_settings().requested_by or getpass.getuser()


def _yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


def _parse_date(_: click.Context, __: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date: write it as YYYY-MM-DD") from None


@click.group()
def main() -> None:
    """Export ProxyWhirl deployments with Dagster: sample data, batch runs and more."""


@main.command("sample-data")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write.")
@click.option("--proxies", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--days", type=click.IntRange(min=1), default=14, show_default=True)
@click.option(
    "--end-date", callback=_parse_date, help="Last day of history (UTC). Default: yesterday."
)
@click.option("--validations-per-day", type=click.IntRange(min=0), default=2000, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
def sample_data(
    out: Path,
    proxies: int,
    days: int,
    end_date: date | None,
    validations_per_day: int,
    seed: int,
) -> None:
    """Write a deterministic sample ProxyWhirl deployment (database, logs, config, .env)."""
    from export_assets.lib.sample import write_sample_deployment

    try:
        sample = write_sample_deployment(
            out,
            proxies=proxies,
            days=days,
            end_date=end_date or _yesterday(),
            validations_per_day=validations_per_day,
            seed=seed,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"wrote {sample.root}: {sample.proxies:,} proxies, {sample.validations:,} validations "
        f"({sample.first_day} to {sample.last_day}), {sample.log_records:,} log records; "
        f"keys in {sample.env_file}"
    )


@main.command("materialize")
@click.option(
    "--job",
    "job_name",
    default="daily_export_job",
    show_default=True,
    help="The daily job to run (an export template such as backup_job, analytics_job).",
)
@click.option("--last-days", type=click.IntRange(min=1), default=7, show_default=True)
@click.option(
    "--end-date", callback=_parse_date, help="Last partition to export. Default: yesterday (UTC)."
)
@click.option(
    "--verbose", is_flag=True, help="Show Dagster's own run log (DEBUG and up) and tracebacks."
)
def materialize(job_name: str, last_days: int, end_date: date | None, verbose: bool) -> None:
    """Run a job for each of the last N complete UTC days, recorded in Dagster's run history.

    A failure prints one line per distinct problem (what, and what to do); --verbose adds
    Dagster's log and the tracebacks.
    """
    from dagster import DagsterInvalidConfigError

    try:
        _materialize(job_name, last_days, end_date, verbose)
    except click.ClickException:
        raise
    except DagsterInvalidConfigError as exc:  # a job's run config Dagster refused
        if verbose:
            traceback.print_exc()
        problems = "; ".join(error.message for error in exc.errors) or _one_line(exc)
        raise click.ClickException(f"invalid run config of {job_name}: {problems}") from None
    except Exception as exc:  # an unexpected error: one line, the traceback on request
        if verbose:
            traceback.print_exc()
        message = f"{type(exc).__name__}: {_one_line(exc)}"
        raise click.ClickException(message + _VERBOSE_HINT * (not verbose)) from None


_VERBOSE_HINT = " (--verbose shows the traceback)"
# How many distinct failure messages a failed run prints before "... and N more".
_MAX_FAILURE_LINES = 4


def _materialize(job_name: str, last_days: int, end_date: date | None, verbose: bool) -> None:
    import uuid

    from dagster import BetaWarning, PreviewWarning

    # Dagster flags the features we rely on (per-partition backfills, partitioned checks)
    # as beta or preview on every load; that is for developers, not for this command's user.
    warnings.filterwarnings("ignore", category=BetaWarning)
    warnings.filterwarnings("ignore", category=PreviewWarning)
    from export_assets.cli.instance import open_instance
    from export_assets.cli.ops import daily_job
    from export_assets.definitions import code_location
    from export_assets.defs.exports.daily import DAYS_PER_BACKFILL_RUN
    from export_assets.defs.operations.audit import RANGE_END_TAG, RANGE_START_TAG
    from export_assets.defs.operations.run_sweep import run_process_tags, sweep_dead_runs
    from export_assets.defs.partitions import partition_start
    from export_assets.settings import current_settings

    home = current_settings().dagster_home
    if home is None:
        raise click.ClickException(
            "DAGSTER_HOME is not set: run `make run`, or export DAGSTER_HOME=$PWD/.dagster"
        )
    # Built now, from the environment this command runs in (export_assets.definitions).
    defs = code_location()
    job = daily_job(defs, job_name)
    last = end_date or _yesterday()
    partitions = [(last - timedelta(days=n)).isoformat() for n in reversed(range(last_days))]
    # The days asked for are checked first: a mistake in the command, before the environment.
    first = partition_start()
    if partitions[0] < first:
        fits = (last - date.fromisoformat(first)).days + 1
        fix = f"ask for --last-days {fits} or fewer" if fits > 0 else f"end on {first} or later"
        raise click.ClickException(
            f"nothing was exported: {partitions[0]} is before the first partition, {first} "
            f"(EXPORT_PARTITION_START): {fix}, or set EXPORT_PARTITION_START earlier"
        )
    # Every asset of the job reads the database: a missing or foreign file is said once,
    # here, before any run starts (so nothing of the job is published either).
    if "proxywhirl" in job.required_resource_keys:
        check_database((defs.resources or {})["proxywhirl"])
    # Dagster's console log prints every step failure with its traceback: quiet unless
    # asked; the failures are read back from the run's events and said once each below.
    log_level = "DEBUG" if verbose else "CRITICAL"
    if not verbose:
        # A ranged run reports its checks per day as evaluations, and a failed blocking one
        # fails its step (export_assets.defs.exports.daily), which skips what follows: Dagster's
        # note that the check "emitted no result" and does not gate is not for this user.
        logging.getLogger("dagster._core.execution.plan.active").setLevel(logging.ERROR)
    rows: list[tuple[str, str, str, int, int]] = []
    with open_instance(home) as instance:
        # Runs killed earlier (kill -9, crash) would otherwise stay STARTED and keep their
        # pool slots, blocking these runs: fail them and free their slots first, no daemon needed.
        swept = sweep_dead_runs(instance)
        if swept.failed or swept.freed:
            click.echo(f"dead-run sweep: {swept.summary()}", err=True)
        # As a backfill from the UI: up to DAYS_PER_BACKFILL_RUN days a run, each day its own
        # partition (file, manifest, checks).
        for start in range(0, len(partitions), DAYS_PER_BACKFILL_RUN):
            days = partitions[start : start + DAYS_PER_BACKFILL_RUN]
            span = days[0] if len(days) == 1 else f"{days[0]}..{days[-1]}"
            click.echo(f"{job_name} {span} ...", err=True)
            run_id = str(uuid.uuid4())
            result = job.execute_in_process(
                partition_key=days[0] if len(days) == 1 else None,
                instance=instance,
                raise_on_error=False,
                # The job's own defaults (an export template's formats) plus the log level:
                # an explicit run_config would otherwise replace them.
                run_config={
                    **job.get_run_config_for_partition_key(days[0]),
                    "loggers": {"console": {"config": {"log_level": log_level}}},
                },
                run_id=run_id,
                # This process executes the run: recorded so that the sweep can tell if it died.
                tags={
                    REQUESTED_BY_TAG: requesting_user(),
                    TEMPLATE_TAG: job_name,
                    **run_process_tags(run_id),
                    **(
                        {}
                        if len(days) == 1
                        else {
                            RANGE_START_TAG: days[0],
                            RANGE_END_TAG: days[-1],
                        }
                    ),
                },
            )
            if not verbose:
                _echo_run_warnings(instance, result.run_id)
            if not result.success:
                raise click.ClickException(_failure_report(job_name, span, result, verbose))
            for event in result.get_asset_materialization_events():
                materialization = event.materialization
                rows.append(
                    (
                        materialization.partition or span,
                        materialization.asset_key.to_user_string(),
                        _metadata(materialization.metadata, "path", "dagster/uri"),
                        int(
                            _metadata(
                                materialization.metadata,
                                "dagster/partition_row_count",
                                "dagster/row_count",
                            )
                        ),
                        int(_metadata(materialization.metadata, "bytes")),
                    )
                )
    _print_table(("partition", "asset", "path", "rows", "bytes"), rows)


def check_database(resource: Any) -> None:
    """Open the ProxyWhirl database the way every export does, or say in one line why not.

    The message names the database's path (PROXYWHIRL_DB), the problem and the fix. A
    database locked past the busy timeout is let through: the runs' retries wait for it.
    """
    from dagster import EnvVar

    from export_assets.defs.retries import is_transient
    from export_assets.lib.source.database import SourceError, SourceSnapshot

    database = resource.database
    if isinstance(database, EnvVar):  # PROXYWHIRL_DB, resolved as a run resolves it
        database = database.get_value() or str(database)
    path = Path(str(database))
    if path.is_file() and path.stat().st_size == 0:  # SQLite would call it an empty database
        raise click.ClickException(
            f"nothing was exported: ProxyWhirl database {path} is an empty file (0 bytes): set "
            "PROXYWHIRL_DB to ProxyWhirl's proxies.db (or write a sample with "
            "`export-assets sample-data --out DIR`)"
        )
    try:
        SourceSnapshot(
            path, busy_timeout_ms=int(resource.busy_timeout_ms), batch_rows=1, identities=False
        ).close()
    except SourceError as exc:
        if is_transient(exc):
            click.echo(f"warning: {_one_line(exc)}", err=True)
            return
        raise click.ClickException(f"nothing was exported: {_one_line(exc)}") from None


def _echo_run_warnings(instance: DagsterInstance, run_id: str) -> None:
    """The run's own WARNING and ERROR log lines (not Dagster's events), once each.

    They are in the instance's event log whatever the console's level.
    """
    seen: set[str] = set()
    for entry in instance.all_logs(run_id):
        level = entry.level if isinstance(entry.level, int) else logging.getLevelName(entry.level)
        if entry.is_dagster_event or not isinstance(level, int) or level < logging.WARNING:
            continue
        kind = logging.getLevelName(level).lower()
        line = f"{kind}: {entry.step_key + ': ' if entry.step_key else ''}{entry.user_message}"
        if line not in seen:
            seen.add(line)
            click.echo(_one_line(line), err=True)


def _failure_report(
    job_name: str, partition: str, result: ExecuteInProcessResult, verbose: bool
) -> str:
    """What failed in a run: each distinct message once, with the steps it failed."""
    from export_assets.defs.operations.failures import grouped_step_failures

    groups = grouped_step_failures(result.get_step_failure_events())
    lines = [
        f"{job_name} failed for {partition} (run {result.run_id}); nothing of a failed step "
        "was published:"
    ]
    for steps, message in groups[:_MAX_FAILURE_LINES]:
        lines.append(f"  {', '.join(steps)}: {message}")
    if len(groups) > _MAX_FAILURE_LINES:
        lines.append(f"  ... and {len(groups) - _MAX_FAILURE_LINES} more problems")
    if not groups:
        lines.append("  the run failed outside its steps: see the run in the Dagster UI")
    if not verbose:
        lines.append("Run again with --verbose for Dagster's log and the tracebacks.")
    return "\n".join(lines)


def _one_line(error: BaseException | str) -> str:
    """The first line of an error's message (the rest is detail for --verbose)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@main.command("link")
@click.argument("asset")
@click.argument("partition")
@click.option(
    "--expires",
    default="24h",
    show_default=True,
    help="How long an S3 link works: seconds, or a number with s, m, h or d (at most 7d).",
)
def link(asset: str, partition: str, expires: str) -> None:
    """Print a download link to a published export: presigned for S3, a path on disk."""
    from export_assets.cli.ops import require_known_asset
    from export_assets.defs.resources.io_manager import read_manifest
    from export_assets.defs.resources.store import store_from_environment
    from export_assets.lib.exports.destinations import LocalDestination, UnsafePathError
    from export_assets.lib.exports.manifest import ManifestError, manifest_key, partition_folder
    from export_assets.lib.exports.s3 import S3Destination

    try:  # the arguments and every path in the manifest must stay under the destination
        key = manifest_key(asset, partition)
    except (UnsafePathError, ManifestError) as exc:
        raise click.ClickException(str(exc)) from None
    seconds = _duration_seconds(expires)
    store = store_from_environment()
    destination = store.open()
    try:
        manifest = read_manifest(destination, key)
    except (UnsafePathError, ManifestError) as exc:
        raise click.ClickException(str(exc)) from None
    if manifest is None:
        # A typo is "unknown asset", not "not published".
        require_known_asset(asset, request_folders=True)
        raise click.ClickException(
            f"{asset} {partition} is not published in {store.destination} (no manifest): "
            "materialize it first"
        )
    for entry in manifest.files:
        key = f"{partition_folder(asset, partition)}/{entry.path}"
        if isinstance(destination, S3Destination):
            try:
                click.echo(destination.presigned_url(key, seconds))
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--expires") from exc
        elif isinstance(destination, LocalDestination):
            try:
                click.echo(destination.real_path(key))
            except UnsafePathError as exc:
                raise click.ClickException(str(exc)) from None


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration_seconds(text: str) -> int:
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:])
    number = value[:-1] if unit else value
    try:
        seconds = int(float(number) * (unit or 1))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a duration: write e.g. 3600, 90m, 1h or 7d", param_hint="--expires"
        ) from None
    return seconds


def _metadata(metadata: Mapping[str, MetadataValue[Any]], *keys: str) -> Any:
    for key in keys:
        if key in metadata:
            return metadata[key].value
    return ""


def _print_table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    cells = [header, *[tuple(f"{v:,}" if isinstance(v, int) else str(v) for v in r) for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [isinstance(v, int) for v in rows[0]] if rows else [False] * len(header)
    for index, row in enumerate(cells):
        line = "  ".join(
            cell.rjust(width) if numeric[i] and index else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        click.echo(line.rstrip())
    if not rows:
        click.echo("(nothing was written)", err=True)


from export_assets.cli.secrets import restore as _restore  # noqa: E402
from export_assets.cli.secrets import scan as _scan  # noqa: E402

main.add_command(_scan)
main.add_command(_restore)

from export_assets.cli.ops import history as _history  # noqa: E402
from export_assets.cli.ops import retention as _retention  # noqa: E402

main.add_command(_retention)
main.add_command(_history)

if __name__ == "__main__":
    sys.exit(main())
