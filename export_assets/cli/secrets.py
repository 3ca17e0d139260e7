"""``export-assets scan`` and ``export-assets restore``: the credential and restore verbs."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import click

from export_assets.settings import current_settings


def _default_database() -> Path:
    return current_settings().database


def _default_config(database: Path) -> Path:
    return current_settings().config_for(database)


EXIT_FINDINGS = 1
EXIT_INCOMPLETE = 3
"""``scan``'s exit code when it could not look for every credential (and found nothing)."""


@click.command("scan")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--db",
    "database",
    type=click.Path(path_type=Path),
    help="ProxyWhirl database whose credentials to look for. Default: PROXYWHIRL_DB.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="ProxyWhirl config whose credentials to look for. Default: PROXYWHIRL_CONFIG.",
)
@click.option(
    "--allow-no-credentials",
    is_flag=True,
    help="Exit 0 even when the database and config hold no credential to look for.",
)
@click.option(
    "--allow-undecrypted",
    is_flag=True,
    help="Exit 0 even when stored credentials could not be decrypted (scanned for in their "
    "stored form only).",
)
def scan(
    paths: tuple[Path, ...],
    database: Path | None,
    config_path: Path | None,
    allow_no_credentials: bool,
    allow_undecrypted: bool,
) -> None:
    """Scan export files or folders for credentials; exit 1 on a finding.

    Looks for every username and password in the ProxyWhirl database and config (decrypted
    with PROXYWHIRL_CACHE_ENCRYPTION_KEY and the config's key when set) and for any
    scheme://user:pass@. Prints file and line of each finding, the secret masked.

    Exits 3 when nothing was found but the scan was incomplete: no credential was known
    (wrong --db/--config?) unless --allow-no-credentials, or stored credentials could not
    be decrypted (key unset or wrong) unless --allow-undecrypted.
    """
    from export_assets.lib.security.leaks import LeakScanner, files_to_scan, known_credentials

    database = database or _default_database()
    config_path = config_path or _default_config(database)
    known = known_credentials(database, config_path)
    for note in known.notes:
        click.echo(f"note: {note}", err=True)
    for gap in known.gaps:
        click.echo(f"warning: {gap.message()}", err=True)
    scanner = LeakScanner(known.secrets)
    files = findings = 0
    for path in files_to_scan(paths):
        files += 1
        for finding in scanner.scan_path(path):
            findings += 1
            click.echo(str(finding))
    click.echo(
        f"scanned {files} file(s) for {len(known.secrets)} known credential(s): "
        f"{findings} finding(s)",
        err=True,
    )
    if findings:
        raise SystemExit(EXIT_FINDINGS)
    incomplete = []
    if known.gaps and not allow_undecrypted:
        incomplete.append(
            f"{known.undecrypted} stored credential(s) could not be decrypted, so their clear "
            f"text was not looked for: set {' and '.join(sorted({g.variable for g in known.gaps}))}"
            ", or pass --allow-undecrypted to accept a scan of their stored form only"
        )
    if known.credentials == 0 and not allow_no_credentials:
        incomplete.append(
            f"no credential was known: {database} and {config_path} hold none (or could not be "
            "read), so only scheme://user:pass@ was looked for. Point --db and --config (or "
            "PROXYWHIRL_DB and PROXYWHIRL_CONFIG) at the deployment, or pass "
            "--allow-no-credentials if it really has none"
        )
    for line in incomplete:
        click.echo(f"error: incomplete scan: {line}", err=True)
    if incomplete:
        raise SystemExit(EXIT_INCOMPLETE)


@click.group("restore")
def restore() -> None:
    """Restore a ProxyWhirl pool or config from a verified export.

    Keys come from the environment only: EXPORT_ENCRYPTION_KEY or EXPORT_PASSWORD to read
    an encrypted export, PROXYWHIRL_CACHE_ENCRYPTION_KEY (pool) or the config's
    encryption_key_env (config) to encrypt the restored credentials.
    """


@restore.command("pool")
@click.argument("export", type=click.Path(path_type=Path))
@click.option(
    "--db",
    "database",
    type=click.Path(path_type=Path),
    required=True,
    help="ProxyWhirl's proxies.db to restore into (created, mode 0600, if it does not exist).",
)
@click.option(
    "--on-duplicate",
    type=click.Choice(["skip", "overwrite", "merge"]),
    default="skip",
    show_default=True,
    help="A URL already in the database: keep it, replace it, or fill its empty "
    "fields (keeping its status).",
)
@click.option(
    "--history",
    metavar="START..END",
    help="Also replay the validation_events partitions of these days (UTC, inclusive; one "
    "day: DAY) into validation_results, ids included. From the first exported day to the "
    "pool's day, the restored deployment re-exports the same proxy_list and "
    "validation_events.",
)
@click.option(
    "--events",
    type=click.Path(path_type=Path),
    help="The validation_events folder holding the dt=YYYY-MM-DD partitions --history reads. "
    "Default: beside the export (DESTINATION/validation_events).",
)
@click.option("--dry-run", is_flag=True, help="Print the diff; write nothing.")
def restore_pool_command(
    export: Path,
    database: Path,
    on_duplicate: str,
    history: str | None,
    events: Path | None,
    dry_run: bool,
) -> None:
    """Restore a proxy_list export (its dt= folder) into proxies.db, in one transaction.

    Reads every format and codec proxy_list exports (csv, jsonl, json, parquet, xlsx;
    gzip, zstd, zip), typed by the manifest. Each proxy gets its identity, credentials and
    status as exported, written as ProxyWhirl writes them.
    """
    from export_assets.lib.restore import RestoreError
    from export_assets.lib.restore.pool import OnDuplicate, restore_pool

    if events is not None and history is None:
        raise click.UsageError("--events names where --history reads: give --history too")
    try:
        diff = restore_pool(
            export,
            database,
            on_duplicate=cast(OnDuplicate, on_duplicate),
            dry_run=dry_run,
            history=history,
            events=events,
        )
    except RestoreError as exc:
        raise click.ClickException(str(exc)) from exc
    if dry_run:
        for line in diff.lines():
            click.echo(line)
    for note in diff.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(diff.summary())


@restore.command("config")
@click.argument("export", type=click.Path(path_type=Path))
@click.option(
    "--to",
    "target",
    type=click.Path(path_type=Path),
    required=True,
    help="proxywhirl.toml (or a pyproject.toml, into [tool.proxywhirl]) to write.",
)
@click.option("--dry-run", is_flag=True, help="Print the diff; write nothing.")
def restore_config_command(export: Path, target: Path, dry_run: bool) -> None:
    """Restore a pool_config export (its dt= folder) as TOML ProxyWhirl loads."""
    from export_assets.lib.restore import RestoreError
    from export_assets.lib.restore.config import restore_config

    try:
        diff = restore_config(export, target, dry_run=dry_run)
    except RestoreError as exc:
        raise click.ClickException(str(exc)) from exc
    for line in diff.lines() if dry_run else [f"note: {n}" for n in diff.notes]:
        click.echo(line)
    click.echo(diff.summary())
