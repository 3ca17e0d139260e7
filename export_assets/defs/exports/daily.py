"""What every daily export asset shares: UTC-day partitions, ranged backfill runs, its checks.

An export's compute is written for one day: it takes a :class:`DayContext` (the partition
key, the log, metadata for that day) and returns that day's export. :func:`daily_export`
makes it a Dagster asset whose step covers every day of its run (one for a schedule or a
launchpad run, several for a backfill run), hands the IO manager one export a day, and then
reports, for each day, the two checks the IO manager proved while writing:

- ``export_is_intact``: the data file was written whole, its rows, bytes and sha256 are
  the manifest's, and the destination stored exactly those bytes (S3: CRC32 of every part);
- ``no_credential_leak``: no credential the deployment holds, and no ``user:pass@``, was in
  the data file, its manifest, or the run's event log. A leak in the data stops the publish
  before it happens (the step fails; the day keeps its previous version); a scan that could
  not look for every credential (stored ones that do not decrypt) warns, with WARN severity.

A deep re-read of published partitions runs on demand: ``verify_exports_job``.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from importlib.metadata import version
from typing import Any

import pyarrow as pa
from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    AssetOut,
    AssetsDefinition,
    BackfillPolicy,
    Config,
    DagsterLogManager,
    DagsterRun,
    Failure,
    FreshnessPolicy,
    MetadataValue,
    Output,
    PreviewWarning,
    multi_asset,
    serialize_value,
)
from pydantic import Field

from export_assets.defs.exports.config import FailFastConfig
from export_assets.defs.operations.run_sweep import record_run_process
from export_assets.defs.partitions import daily_partitions
from export_assets.defs.resources.io_manager import ExportIOManager, read_manifest, table_schema
from export_assets.defs.retries import (
    export_retry_policy,
    fail_fast_on_permanent_errors,
    stop_on_interrupt,
)
from export_assets.defs.source import OWNERS as SOURCE_OWNERS
from export_assets.lib.exports.days import AnyExport, DailyExports, Day
from export_assets.lib.exports.destinations import Destination
from export_assets.lib.exports.manifest import ExportManifest, is_prefix_name, manifest_key
from export_assets.lib.exports.verify import (
    Verification,
    bullet_list,
    coverage_description,
    reread_problems,
    rescan_findings,
    shown_findings,
)
from export_assets.lib.security.leaks import Finding, KnownCredentials, LeakScanner

EXPORT_GROUP = "proxywhirl_exports"
REPORT_GROUP = "proxywhirl_reports"
# The other assets of a domain, each under its own key and folder (never the daily record's).
TEMPLATE_GROUP = "proxywhirl_templates"
REQUEST_GROUP = "proxywhirl_requests"
REQUESTS = "requests"
_PREFIX_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$"
OWNERS = SOURCE_OWNERS
CODE_VERSION = version("export_assets")
# Kinds naming a file format: a variant shows the one it writes.
FORMAT_KINDS = frozenset({"csv", "json", "parquet", "xlsx", "yaml", "toml", "pdf", "txt"})
# The concurrency pool of every export's write (dagster.yaml bounds it across all runs).
EXPORT_WRITERS_POOL = "s3_writers"

# A backfill runs up to this many days per run, each day still its own partition, file and
# manifest. Measured through the UI path (bench/ui_path.py): a run costs a process that
# imports the code location and a few seconds of Dagster's own bookkeeping, against ~1 s of
# export work a day on the sample; one run per day made a 7-day backfill 3.2 times the CLI.
DAYS_PER_BACKFILL_RUN = 10
ranged_backfill = BackfillPolicy.multi_run(DAYS_PER_BACKFILL_RUN)

INTACT = "export_is_intact"
NO_LEAK = "no_credential_leak"
_INTACT_DESCRIPTION = (
    "Proven while writing: every batch matched the declared schema, the rows, bytes and "
    "sha256 of the data file are the manifest's, and the destination stored exactly those "
    "bytes. A mismatch publishes nothing. Re-read published partitions: verify_exports_job."
)
_NO_LEAK_DESCRIPTION = (
    "Scanned while writing: no credential the ProxyWhirl database or config holds, and no "
    "scheme://user:pass@, in the data file, its manifest or the run's event log. A leak in the "
    "data stops the publish (nothing reaches the destination); credentials that cannot be "
    "decrypted make the scan incomplete: WARN, naming the variable to set."
)


class DayContext:
    """What an export's compute sees of its step, for one day of the run."""

    def __init__(self, context: AssetExecutionContext, day: Day) -> None:
        self._context = context
        self._day = day

    @property
    def partition_key(self) -> str:
        """The UTC day this compute exports, as ``YYYY-MM-DD``."""
        return self._day.partition

    @property
    def log(self) -> DagsterLogManager:
        """The run's log."""
        return self._context.log

    @property
    def run(self) -> DagsterRun:
        """The run."""
        return self._context.run

    @property
    def instance(self) -> Any:
        """Dagster's instance (run history, event log)."""
        return self._context.instance

    def add_output_metadata(self, metadata: dict[str, Any]) -> None:
        """Facts for this day's materialization, beside the ones the IO manager records."""
        self._day.metadata.update(metadata)


def export_check_specs(key: AssetKey) -> list[AssetCheckSpec]:
    """The two checks every export reports from its own step, one result per day."""
    # Partitioned check specs are a Dagster preview: what they do here is tested
    # (test_ranged_runs, test_checks); the warning would repeat on every load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreviewWarning)
        return _check_specs(key)


def _check_specs(name: AssetKey) -> list[AssetCheckSpec]:
    return [
        AssetCheckSpec(
            INTACT,
            asset=name,
            blocking=True,
            description=_INTACT_DESCRIPTION,
            partitions_def=daily_partitions,
        ),
        AssetCheckSpec(
            NO_LEAK,
            asset=name,
            blocking=True,
            description=_NO_LEAK_DESCRIPTION,
            partitions_def=daily_partitions,
        ),
    ]


@dataclass(frozen=True)
class ExportDomain:
    """An export domain: its compute for one day, and what every asset of it shares."""

    name: str
    compute: Callable[..., AnyExport]
    config_class: type[Config] | None
    group_name: str
    schema: pa.Schema | None
    kinds: frozenset[str]
    description: str
    deps: Any

    def settings(self, **options: Any) -> Config | None:
        """The domain's options with ``options`` set (the rest their defaults)."""
        if self.config_class is None:
            if options:
                raise TypeError(f"{self.name} takes no options; got {', '.join(options)}")
            return None
        return self.config_class(**options)


DOMAINS: dict[str, ExportDomain] = {}
"""Every export domain defined with :func:`daily_export`, by name."""


def daily_export(
    group_name: str = EXPORT_GROUP,
    schema: pa.Schema | None = None,
    *,
    kinds: set[str] | None = None,
    description: str = "",
    deps: Any = None,
) -> Callable[[Callable[..., AnyExport]], AssetsDefinition]:
    """The canonical asset of an export domain whose compute exports one day.

    ``compute(context: DayContext, config: SomeConfig, resources...)`` returns the day's
    Export, DocumentExport or RenderedExport. The canonical asset (key: the compute's name)
    runs it with ``SomeConfig``'s defaults, fixed here: no launchpad, template or CLI
    option changes what the daily record is. :func:`export_template` and
    :func:`export_request` make the domain's other assets, each under its own key and
    folder. ``schema`` (an Export's columns) is shown in the catalog.

    Every export retries transient faults (exponential backoff with jitter) and fails at
    once on permanent ones (see ``export_assets.defs.retries``), and an interrupted one (SIGTERM,
    Ctrl-C, terminate) stops without a retry. Its step records the run's process in the
    run's tags first, so that a run killed while holding its pool slot is failed and freed
    by the dead-run sweep (``export_assets.defs.operations.run_sweep``).
    """

    def define(compute: Callable[..., AnyExport]) -> AssetsDefinition:
        parameters = list(inspect.signature(compute).parameters.values())
        if not parameters or parameters[0].name != "context":
            raise TypeError(f"{compute.__name__} must take `context: DayContext` first")
        config = next((p for p in parameters if p.name == "config"), None)
        domain = ExportDomain(
            name=compute.__name__,
            compute=compute,
            config_class=None if config is None else config.annotation,
            group_name=group_name,
            schema=schema,
            kinds=frozenset(kinds or ()),
            description=description,
            deps=deps,
        )
        DOMAINS[domain.name] = domain
        return _export_asset(domain, AssetKey(domain.name), group_name, domain.settings())

    return define


def _domain(asset: AssetsDefinition | str) -> ExportDomain:
    name = asset if isinstance(asset, str) else asset.key.path[-1]
    if name not in DOMAINS:
        raise KeyError(f"{name} is not an export domain; domains: {', '.join(sorted(DOMAINS))}")
    return DOMAINS[name]


def with_settings(asset: AssetsDefinition | str, **options: Any) -> AssetsDefinition:
    """The canonical asset of ``asset``'s domain with other fixed settings, same key.

    How a deployment chooses its daily record's format, codec, fields or credential policy:
    in code, where its definitions are built (``export_assets.definitions``).
    """
    domain = _domain(asset)
    return _export_asset(
        domain, AssetKey(domain.name), domain.group_name, domain.settings(**options)
    )


def export_template(
    asset: AssetsDefinition | str,
    prefix: str,
    description: str,
    after: Sequence[AssetsDefinition] = (),
    **options: Any,
) -> AssetsDefinition:
    """A template of ``asset``'s domain: key ``{prefix}/{name}``, files under
    ``{prefix}/{name}/``, settings fixed here (``options``), in the templates' group.

    ``after``: assets of the same template this one follows in a run; when one of them
    fails, this one is skipped (a backup publishes its config only with its pool).
    """
    if not is_prefix_name(prefix) or prefix == REQUESTS:
        raise ValueError(f"template prefix {prefix!r}: use letters, digits, '_' or '-'")
    domain = _domain(asset)
    key = AssetKey([prefix, domain.name])
    if after:
        domain = replace(domain, deps=[*(domain.deps or []), *after])
    return _export_asset(
        domain, key, TEMPLATE_GROUP, domain.settings(**options), summary=description
    )


def export_request(asset: AssetsDefinition | str) -> AssetsDefinition:
    """The on-demand asset of ``asset``'s domain: key ``requests/{name}``, every option in
    its run config, files under ``requests/{request}/{name}/`` (``request``: a name the
    run config gives), so an ad-hoc export never replaces the daily record."""
    domain = _domain(asset)
    return _export_asset(
        domain,
        AssetKey([REQUESTS, domain.name]),
        REQUEST_GROUP,
        None,
        request=request_config(domain),
        summary="On demand, every option in the run config; files under "
        f"{REQUESTS}/{{request}}/{domain.name}/, never over the daily record.",
    )


def request_config(domain: ExportDomain) -> type[Config]:
    """The run config of ``domain``'s request asset: its options and the request's name."""
    base = domain.config_class or FailFastConfig
    return type(
        f"{domain.name.title().replace('_', '')}Request",
        (base,),
        {
            "__module__": __name__,
            "__doc__": f"An on-demand export of {domain.name}: its options, and where it goes.",
            "__annotations__": {"request": str},
            "request": Field(
                pattern=_PREFIX_PATTERN,
                description=f"The request's name: its files go to {REQUESTS}/{{request}}/"
                f"{domain.name}/dt={{day}}/. Letters, digits, '_' and '-' (up to 64). Two "
                "runs of one name and day: the later replaces the earlier.",
            ),
        },
    )


def record_freshness(group_name: str) -> FreshnessPolicy:
    """When a daily record must have been written: by 03:00 UTC, in the 3 hours before (the
    schedules export the day that just ended at 00:15 and its audit trail at 01:00); the
    weekly reports by Monday 03:00 UTC."""
    return _freshness("0 3 * * 1" if group_name == REPORT_GROUP else "0 3 * * *")


@functools.cache  # Dagster steps through a year of the cron to check it: ~40 ms a policy
def _freshness(deadline_cron: str) -> FreshnessPolicy:
    """One (immutable) policy per deadline, shared by every asset it applies to."""
    return FreshnessPolicy.cron(
        deadline_cron=deadline_cron, lower_bound_delta=timedelta(hours=3), timezone="UTC"
    )


def _settings_text(settings: Config | None) -> str:
    options = getattr(settings, "options", None)
    if options is None:
        return ""
    chosen = options()
    said = [f"format {chosen.format}", f"compression {chosen.compression}"]
    policy = getattr(chosen, "credential_policy", None)
    if policy is not None:
        said.append(f"credentials {policy}")
    fields = getattr(chosen, "fields", None)
    if fields:
        said.append(f"fields {', '.join(fields)}")
    return "Settings: " + "; ".join(said) + "."


def _export_asset(
    domain: ExportDomain,
    key: AssetKey,
    group_name: str,
    settings: Config | None,
    *,
    request: type[Config] | None = None,
    summary: str = "",
) -> AssetsDefinition:
    name = domain.name
    compute = domain.compute
    folder = "/".join(key.path)

    def step(context: AssetExecutionContext, **kwargs: Any) -> Iterator[Any]:
        # From the step's first instruction: an interrupt anywhere in it is never retried.
        with stop_on_interrupt():
            record_run_process(context)
        where = folder
        if request is not None:
            where = f"{REQUESTS}/{kwargs['config'].request}/{name}"
        elif domain.config_class is not None:
            kwargs["config"] = settings
        if key not in context.selected_asset_keys:
            # Only the checks were asked for (the UI's "Execute checks"): the deep re-read.
            yield from _rechecked(context, key, where)
            return
        days = DailyExports([], folder=where)
        for partition in context.partition_keys:
            day = Day(partition)
            if request is not None:
                day.metadata["request"] = MetadataValue.text(kwargs["config"].request)
            day.make = functools.partial(_made, compute, DayContext(context, day), kwargs)
            days.days.append(day)
        # The IO manager makes, writes and proves each day in turn.
        yield Output(days, output_name=name)
        yield from _check_results(context, key, days)

    # Dagster reads the step's parameters (config, resources) from this signature: the
    # compute's, without its config where the settings are fixed.
    parameters = list(inspect.signature(compute).parameters.values())
    context_parameter = parameters[0].replace(annotation=AssetExecutionContext)
    rest = [
        p.replace(annotation=request) if p.name == "config" and request is not None else p
        for p in parameters[1:]
        if p.name != "config" or request is not None
    ]
    step.__signature__ = inspect.Signature([context_parameter, *rest])  # type: ignore[attr-defined]
    step.__name__ = "__".join(key.path)
    step.__doc__ = compute.__doc__
    step.__annotations__ = {
        p.name: p.annotation for p in (context_parameter, *rest) if p.annotation is not p.empty
    }
    step.__module__ = compute.__module__
    chosen = _settings_text(settings)
    # The format a copy writes, when its settings fix one; a request's varies: none shown.
    kinds = set(domain.kinds - FORMAT_KINDS)
    if settings is not None and hasattr(settings, "options"):
        kinds.add(settings.options().format)
    elif request is None:
        kinds |= domain.kinds & FORMAT_KINDS
    metadata = {}
    if domain.schema is not None:  # the catalog shows the columns before the first run
        metadata["dagster/column_schema"] = MetadataValue.table_schema(table_schema(domain.schema))
    # A multi_asset of one asset, subsettable: its check outputs are then optional, which
    # a run of several days needs (it records each day's results against its partition,
    # and Dagster's own check outputs hold one partition each).
    definition: AssetsDefinition = multi_asset(
        name=step.__name__,
        outs={
            name: AssetOut(
                key=key,
                group_name=group_name,
                owners=OWNERS,
                tags={
                    "proxywhirl/domain": name,
                    "proxywhirl/copy": (
                        "request" if request else "record" if key.path == [name] else "template"
                    ),
                },
                # A new release of the exporter may write a day differently: its version.
                code_version=CODE_VERSION,
                # A daily record not written by its deadline shows as overdue in the UI.
                freshness_policy=(
                    record_freshness(group_name) if key.path == [name] and not request else None
                ),
                kinds=kinds or None,
                description=" ".join(filter(None, [summary, domain.description, chosen])),
                metadata=metadata or None,
            )
        },
        deps=domain.deps,
        partitions_def=daily_partitions,
        backfill_policy=ranged_backfill,
        retry_policy=export_retry_policy(),
        pool=EXPORT_WRITERS_POOL,
        check_specs=export_check_specs(key),
        can_subset=True,
    )(step)
    return definition


def _made(
    compute: Callable[..., AnyExport], context: DayContext, kwargs: dict[str, Any]
) -> AnyExport:
    with fail_fast_on_permanent_errors():
        return compute(context, **kwargs)


def _check_results(
    context: AssetExecutionContext, name: AssetKey, days: DailyExports
) -> Iterator[AssetCheckResult | AssetObservation]:
    """Each day's two checks, as the IO manager proved them; one result per check and day."""
    known = days.known or KnownCredentials()
    keys = [day.partition for day in days]
    span = keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"
    for gap in known.gaps:
        context.log.warning(f"{NO_LEAK} on {name.to_user_string()} {span}: {gap.message()}")
    log_findings = _event_log_findings(context, days.scanner or LeakScanner(known.secrets))
    yield from _reported(
        context,
        name,
        {
            day.partition: [
                _intact(days.verified[day.partition]),
                _no_leak(days.verified[day.partition], known, log_findings),
            ]
            for day in days
        },
    )


def _reported(
    context: AssetExecutionContext, name: AssetKey, days: dict[str, list[AssetCheckResult]]
) -> Iterator[AssetCheckResult | AssetObservation]:
    """The check results of each day of the run.

    One day: yielded, and a failed ERROR result blocks as Dagster blocks any check. Several
    days: each result is logged against its day (Dagster's check outputs hold one partition
    each), and a failed ERROR result is made to block here: the step fails, not retried.
    """
    if len(days) == 1:
        [results] = days.values()
        yield from results
        return
    failed = []
    for partition, results in days.items():
        for result in results:
            context.log_event(as_evaluation(name, partition, result))
            if not result.passed and result.severity == AssetCheckSeverity.ERROR:
                failed.append(f"{result.check_name} of {partition}: {result.description}")
    if failed:
        # Yielding records the results logged above (a step that raises first drops them).
        yield AssetObservation(
            asset_key=name,
            metadata={"failed checks": MetadataValue.md(bullet_list(failed))},
        )
        raise Failure(
            description=f"{name.to_user_string()}: {len(failed)} blocking check(s) failed: "
            + "; ".join(failed[:3]),
            allow_retries=False,
        )


def as_evaluation(name: AssetKey, partition: str, result: AssetCheckResult) -> AssetCheckEvaluation:
    """``result`` as the evaluation of asset ``name``'s check for ``partition``."""
    return AssetCheckEvaluation(
        asset_key=name,
        check_name=result.check_name or "",
        passed=result.passed,
        metadata=result.metadata,
        severity=result.severity,
        description=result.description,
        blocking=True,
        partition=partition,
    )


def _rechecked(
    context: AssetExecutionContext, name: AssetKey, folder: str
) -> Iterator[AssetCheckResult | AssetObservation]:
    """The deep re-read of each day of the run (files in ``folder``), as its check results."""
    io_manager = context.resources.io_manager
    if not isinstance(io_manager, ExportIOManager):
        raise TypeError(f"{folder}'s checks re-read through an ExportIOManager, not {io_manager}")
    destination = io_manager.open_destination()
    known = io_manager.known_credentials()
    scanner = LeakScanner(known.secrets)
    yield from _reported(
        context,
        name,
        {
            partition: reread_results(
                destination,
                folder,
                partition,
                read_manifest(destination, manifest_key(folder, partition)),
                scanner,
                known,
            )
            for partition in context.partition_keys
        },
    )


def reread_results(
    destination: Destination,
    name: str,
    partition: str,
    manifest: ExportManifest | None,
    scanner: LeakScanner,
    known: KnownCredentials,
) -> list[AssetCheckResult]:
    """The two checks of a published partition, proven by reading it back."""
    if manifest is None:
        problems = [f"{name} {partition} is not published: it has no manifest"]
        findings: list[Finding] = []
    else:
        problems = reread_problems(destination, manifest)
        findings = rescan_findings(destination, manifest, scanner)
    return [
        AssetCheckResult(
            check_name=INTACT,
            passed=not problems,
            description="re-read: " + ("intact" if not problems else problems[0]),
            metadata={
                "files": MetadataValue.int(len(manifest.files) if manifest else 0),
                "rows": MetadataValue.int(manifest.total_rows if manifest else 0),
                "problems": MetadataValue.md(bullet_list(problems)),
            },
        ),
        leak_result(findings, known, said="re-scan: "),
    ]


def _intact(verification: Verification) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=INTACT,
        passed=True,  # a day that failed any of it was not published, and its step failed
        description=f"{verification.rows:,} rows, {verification.bytes:,} bytes as stored",
        metadata={
            "file": MetadataValue.text(verification.file),
            "rows": MetadataValue.int(verification.rows),
            "bytes": MetadataValue.int(verification.bytes),
            "stored_bytes": MetadataValue.int(verification.stored_bytes or 0),
            "sha256": MetadataValue.text(verification.sha256),
        },
    )


def _no_leak(
    verification: Verification, known: KnownCredentials, log_findings: list[Finding]
) -> AssetCheckResult:
    return leak_result(verification.findings + log_findings, known)


def leak_result(
    findings: list[Finding], known: KnownCredentials, said: str = ""
) -> AssetCheckResult:
    """``no_credential_leak`` for ``findings``: ERROR on a finding, WARN when the scan could
    not look for every credential (stored ones that do not decrypt), else passed."""
    notes = known.notes + [gap.message() for gap in known.gaps]
    return AssetCheckResult(
        check_name=NO_LEAK,
        passed=not findings and not known.gaps,
        severity=(
            AssetCheckSeverity.WARN if known.gaps and not findings else AssetCheckSeverity.ERROR
        ),
        description=said + coverage_description(len(findings), known),
        metadata={
            "findings": MetadataValue.int(len(findings)),
            "known_credentials": MetadataValue.int(len(known.secrets)),
            "undecrypted_credentials": MetadataValue.int(known.undecrypted),
            "details": MetadataValue.md(bullet_list(shown_findings(findings))),
            "notes": MetadataValue.md(bullet_list(notes)),
        },
    )


def _event_log_findings(context: AssetExecutionContext, scanner: LeakScanner) -> list[Finding]:
    """Secrets in the run's own record so far: log messages, step events, metadata."""
    run_id = context.run.run_id
    findings: list[Finding] = []
    for entry in context.instance.all_logs(run_id):
        kind = str(getattr(entry.dagster_event_type, "value", None) or "log message")
        findings += [
            Finding(f"run {run_id} event log", kind, what)
            for what in scanner.scan_text(serialize_value(entry))
        ]
    return findings
