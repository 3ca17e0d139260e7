"""``export-assets retention`` and ``export-assets history``: operations from a shell."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from dagster import Definitions, JobDefinition


def unknown_name(
    kind: str, name: str, valid: Iterable[str], shown: Iterable[str] | None = None
) -> click.ClickException:
    """``unknown {kind} 'name'``, the closest valid name when one is close, and the list
    (``shown``: the list in short, when it is long)."""
    names = sorted(valid)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    listed = ", ".join(names if shown is None else shown)
    return click.ClickException(f"unknown {kind} {name!r}{hint}; valid {kind}s: {listed}")


def daily_job(defs: Definitions, name: str) -> JobDefinition:
    """The daily-partitioned job ``name`` of ``defs``, or an error listing the valid ones."""
    jobs = {job.name: job for job in defs.resolve_all_job_defs() if not job.name.startswith("__")}
    daily = sorted(job for job, definition in jobs.items() if definition.partitions_def)
    if name not in jobs:
        raise unknown_name("job", name, daily)
    if name not in daily:
        raise click.ClickException(
            f"{name} is not partitioned by day, so it has no days to materialize: launch it "
            f"from the Dagster UI or with `dagster job launch -w workspace.yaml -j {name}`; "
            "daily jobs: "
            f"{', '.join(daily)}"
        )
    return jobs[name]


def export_asset_names() -> list[str]:
    """The assets that publish daily partitions (what link, history and others take)."""
    import warnings

    from dagster import BetaWarning, PreviewWarning

    warnings.filterwarnings("ignore", category=BetaWarning)
    warnings.filterwarnings("ignore", category=PreviewWarning)
    from export_assets.definitions import defs

    return sorted(
        spec.key.to_user_string()
        for spec in defs.resolve_all_asset_specs()
        if spec.partitions_def is not None
    )


def require_known_asset(name: str, request_folders: bool = False) -> None:
    """Refuse a name that is not an export asset, listing the valid names; with
    ``request_folders``, a request's folder (``requests/{request}/{asset}``) is one too."""
    names = export_asset_names()
    parts = name.split("/")
    if request_folders and len(parts) == 3 and parts[0] == "requests":
        name = f"requests/{parts[2]}"
    if name not in names:
        requests = "requests/{request}/{asset}" if request_folders else "requests/{asset}"
        shown = [n for n in names if not n.startswith("requests/")] + [requests]
        raise unknown_name("asset", name, names, shown)


@click.command("retention")
@click.option(
    "--keep-days",
    type=click.IntRange(min=0),
    default=None,
    help="Keep partitions of this many days before today (UTC).  [default: "
    "EXPORT_RETENTION_DAYS, or 30]",
)
@click.option(
    "--max-total-bytes",
    type=click.IntRange(min=0),
    default=None,
    help="When what is kept exceeds this many bytes, delete the oldest partitions first.",
)
@click.option("--dry-run", is_flag=True, help="Print what would be deleted; delete nothing.")
def retention(keep_days: int | None, max_total_bytes: int | None, dry_run: bool) -> None:
    """Delete expired export partitions in EXPORT_DESTINATION (disk or S3).

    Only the files each partition's manifest lists are deleted, then the manifest; other
    files are left alone.
    """
    from export_assets.defs.resources.store import store_from_environment
    from export_assets.lib.exports.destinations import DestinationError
    from export_assets.lib.exports.retention import apply_retention, default_keep_days

    try:
        days = keep_days if keep_days is not None else default_keep_days()
        store = store_from_environment()
        report = apply_retention(
            store.open(), keep_days=days, max_total_bytes=max_total_bytes, dry_run=dry_run
        )
    except (ValueError, DestinationError) as exc:
        raise click.ClickException(str(exc)) from exc
    dry = " (dry run)" if dry_run else ""
    click.echo(f"retention of {store.destination}: keep {days} days{dry}")
    for line in report.lines():
        click.echo(line)


def _since(_: click.Context, __: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date: write YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command("history")
@click.option("--asset", default=None, help="Only this asset (e.g. proxy_list).")
@click.option("--since", callback=_since, help="Only from this UTC date or time on.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def history(asset: str | None, since: datetime | None, as_json: bool) -> None:
    """Who exported what and when, from Dagster's run history (failed runs included)."""
    from export_assets.cli.instance import open_instance
    from export_assets.defs.operations.audit import export_history
    from export_assets.settings import current_settings

    home = current_settings().dagster_home
    if home is None:
        raise click.ClickException(
            "DAGSTER_HOME is not set: export DAGSTER_HOME=$PWD/.dagster (the instance `make run` "
            "and `make ui` use)"
        )
    with open_instance(home) as instance:
        records = export_history(instance, asset=asset, since=since)
    if asset is not None and not records:
        require_known_asset(asset)  # a typo is "unknown asset", not "no exports"
    if as_json:
        for record in records:
            click.echo(json.dumps(record.as_dict(), sort_keys=False))
        return
    if not records:
        click.echo("(no exports recorded)", err=True)
        return
    header = (
        "time",
        "requested_by",
        "job",
        "status",
        "asset",
        "partition",
        "rows",
        "bytes",
        "sha256",
        "credential_policy",
        "uri",
        "error",
    )
    rows = [
        (
            r.time,
            r.requested_by,
            r.job,
            r.status,
            r.asset,
            r.partition,
            "" if r.rows is None else f"{r.rows:,}",
            "" if r.bytes is None else f"{r.bytes:,}",
            r.sha256[:12],
            r.credential_policy,
            r.uri,
            r.error,
        )
        for r in records
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
