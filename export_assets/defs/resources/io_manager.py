"""The one writer of the project: Export -> format -> codec -> destination, manifest last."""

from __future__ import annotations

import itertools
import json
import shutil
import time as clock
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml
from dagster import (
    ConfigurableIOManager,
    InputContext,
    MetadataValue,
    OutputContext,
    TableColumn,
    TableColumnConstraints,
    TableSchema,
)
from pydantic import Field

from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.defs.resources.store import ExportStore
from export_assets.defs.retries import fail_fast_on_permanent_errors, stop_on_interrupt
from export_assets.lib.exports import codecs, formats
from export_assets.lib.exports.days import AnyExport, DailyExports
from export_assets.lib.exports.destinations import (
    DEBRIS_AGE,
    Destination,
    DestinationError,
    LocalDestination,
)
from export_assets.lib.exports.export import (
    DocumentExport,
    DocumentFormat,
    DocumentOptions,
    Export,
    ExportOptions,
    RenderedExport,
    RenderedOptions,
)
from export_assets.lib.exports.lease import PartitionLease
from export_assets.lib.exports.manifest import (
    MANIFEST_NAME,
    PARTITION_FOLDER_PREFIX,
    ExportManifest,
    ManifestFile,
    PreviousManifest,
    columns_of,
    data_file_name,
    is_partition_key,
    manifest_key,
    partition_folder,
    sha256_hex,
)
from export_assets.lib.exports.memory import skip_the_final_collection, use_system_allocator
from export_assets.lib.exports.streams import MeasuredStream
from export_assets.lib.exports.verify import (
    CredentialLeakError,
    IntegrityError,
    TextScan,
    Verification,
    scan_batch,
    scan_document,
)
from export_assets.lib.security.leaks import (
    Finding,
    KnownCredentials,
    LeakScanner,
    known_credentials,
)
from export_assets.settings import current_settings

PROGRESS_EVERY_SECONDS = 5.0
# Formats whose bytes are text a reader sees as is (before the outer codec): scanned as
# written. Parquet and xlsx compress inside: their record batches are scanned instead.
_TEXT_FORMATS = frozenset({"csv", "jsonl", "json", "txt", "yaml"})


class ExportSchemaError(ValueError):
    """A batch does not match the schema its export declared; nothing was published."""


class ExportFieldsError(ValueError):
    """The run config selects a field the export does not have."""


class ConcurrentPublishError(RuntimeError):
    """The manifest changed under this run: its compare-and-swap failed; nothing published."""


# Test hook: called under the lease just before the manifest is published (key, manifest),
# so tests can hold one run there and race another against it. None in production.
before_manifest_write: Callable[[str, ExportManifest], None] | None = None


@dataclass(frozen=True)
class Produced:
    """What writing a data file's content found: records, leak findings, and for formats that
    compress inside (Parquet, xlsx) the data's uncompressed (Arrow) size."""

    rows: int
    findings: list[Finding]
    uncompressed_bytes: int | None = None


@dataclass(frozen=True)
class WrittenFile:
    """What streaming one data file measured."""

    key: str
    rows: int
    bytes: int
    uncompressed_bytes: int
    sha256: str
    findings: list[Finding]


class ExportIOManager(ConfigurableIOManager):
    """Writes each partition of an export asset to ``{destination}/{asset}/dt={day}/``.

    Data files first, streamed (never a whole table in memory) through the format and
    codec, hashed, counted and scanned for credentials on the way; ``_manifest.json`` last.
    A finding, a mismatch or any failure publishes nothing for that day and leaves its
    previous version as it was. A run of several days (a backfill run) writes each day in
    turn, each its own partition.
    """

    store: ExportStore = Field(description="Where exports are published.")
    proxywhirl: ProxyWhirlSource | None = Field(
        default=None,
        description="The deployment whose credentials (database and config) the scan that "
        "runs while writing looks for. Unset: only URLs carrying a user and password are "
        "looked for.",
    )
    lease_wait_seconds: float | None = Field(
        default=None,
        ge=0,
        description="How long a run waits for another run of the same partition to finish "
        "before failing (and being retried). Unset: EXPORT_LEASE_WAIT_SECONDS, or 120.",
    )

    def lease_wait(self) -> float:
        """Seconds to wait for a partition's lease."""
        if self.lease_wait_seconds is not None:
            return self.lease_wait_seconds
        return current_settings().lease_wait_seconds

    def open_destination(self) -> Destination:
        """The destination this IO manager writes to."""
        return self.store.open()

    def known_credentials(self) -> KnownCredentials:
        """The credentials the deployment holds, looked for in everything written."""
        if self.proxywhirl is None:
            # Worded without a URL's user:password form, which the scan itself would flag.
            return KnownCredentials(
                notes=[
                    "no ProxyWhirl deployment configured: only URLs carrying a user and "
                    "password were looked for"
                ]
            )
        return known_credentials(Path(self.proxywhirl.database), Path(self.proxywhirl.config_path))

    def handle_output(self, context: OutputContext, obj: DailyExports | AnyExport) -> None:
        # Transient faults propagate for the asset's retry policy; the rest fail at once.
        # An interrupt mid-write (SIGTERM, terminate) stops the step; it is never retried.
        use_system_allocator()  # the days are read and written below, on several threads
        skip_the_final_collection()
        with stop_on_interrupt(), fail_fast_on_permanent_errors():
            if not context.has_asset_partitions:
                raise ValueError(
                    f"{context.asset_key.to_user_string()} is not partitioned; exports are "
                    "written per UTC day"
                )
            days = obj if isinstance(obj, DailyExports) else _one_day(context, obj)
            asset = days.folder or "/".join(context.asset_key.path)
            if days.known is None:
                days.known = self.known_credentials()  # gaps: the step warns with its results
            scanner = days.scanner = LeakScanner(days.known.secrets)
            scanner.prepare()  # while the days' first reads are planned
            destination = self.open_destination()  # one client for every day of the run
            for day in days:
                export = day.make()
                verification, metadata = self._write_day(
                    context, destination, asset, day.partition, export, scanner
                )
                days.verified[day.partition] = verification
                metadata.update(day.metadata)
                if len(days) == 1:
                    context.add_output_metadata(metadata)
                else:
                    # Each day of a ranged run is its own materialization, with its own facts.
                    context.step_context.add_asset_metadata(metadata, partition_key=day.partition)

    def _write_day(
        self,
        context: OutputContext,
        destination: Destination,
        asset: str,
        partition: str,
        obj: AnyExport,
        scanner: LeakScanner,
    ) -> tuple[Verification, dict[str, Any]]:
        if isinstance(obj, RenderedExport):
            content = obj.content
            check_room(destination, asset, partition, rows=1, row_bytes=float(len(content)))

            def write_rendered(key: str, plain: MeasuredStream) -> Produced:
                findings = scan_document(scanner, key, content)
                plain.write(content)
                return Produced(obj.records, findings)

            return self._publish(
                context,
                destination,
                asset,
                partition,
                options=obj.options,
                extension=f".{obj.options.format}",
                columns=[],
                source=obj.source,
                produce=write_rendered,
                scanner=scanner,
            )
        if isinstance(obj, DocumentExport):
            document = serialise_document(obj.document, obj.options.format)
            check_room(destination, asset, partition, rows=1, row_bytes=float(len(document)))

            def write_document(key: str, plain: MeasuredStream) -> Produced:
                scan = TextScan(scanner, key)
                scan.feed(document)
                plain.write(document)
                return Produced(1, scan.finish())  # a document is one record

            return self._publish(
                context,
                destination,
                asset,
                partition,
                options=obj.options,
                extension=f".{obj.options.format}",
                columns=[],
                source=obj.source,
                produce=write_document,
                scanner=scanner,
                encryption=obj.encryption,
            )
        if not isinstance(obj, Export):
            raise TypeError(
                f"{asset} returned {type(obj).__name__}; export assets return an Export, a "
                "DocumentExport or a RenderedExport"
            )
        with obj:
            schema = selected_schema(obj.schema, obj.options.fields, asset)
            _guard_size(destination, asset, partition, obj)
            return self._publish(
                context,
                destination,
                asset,
                partition,
                options=obj.options,
                extension=formats.EXTENSIONS[obj.options.format],
                columns=columns_of(schema),
                source=obj.source,
                produce=lambda key, out: _write_batches(context, key, obj, schema, out, scanner),
                scanner=scanner,
                encryption=obj.encryption,
                table=schema,
            )

    def _publish(
        self,
        context: OutputContext,
        destination: Destination,
        asset: str,
        partition: str,
        *,
        options: ExportOptions | DocumentOptions | RenderedOptions,
        extension: str,
        columns: list[dict[str, Any]],
        source: Mapping[str, Any],
        produce: Callable[[str, MeasuredStream], Produced],
        scanner: LeakScanner,
        encryption: Mapping[str, Any] | None = None,
        table: pa.Schema | None = None,
    ) -> tuple[Verification, dict[str, Any]]:
        folder = partition_folder(asset, partition)
        name = data_file_name(asset, partition, extension + codecs.EXTENSIONS[options.compression])
        key = manifest_key(asset, partition)
        lease = PartitionLease(
            destination,
            asset,
            partition,
            context.run_id,
            wait_seconds=self.lease_wait(),
            log=context.log.warning,
        )
        # One writer per partition: everything from reading the replaced manifest to
        # deleting its stale files happens under the lease.
        with lease:
            found = destination.read_versioned(key)
            replaced = (
                None
                if found is None
                else ExportManifest.from_json(found[0], where=destination.uri(key))
            )
            for leftover in destination.remove_debris(folder, DEBRIS_AGE):
                context.log.warning(f"removed {leftover}, left by a run that was killed mid-write")
            previous = _previous_manifest(destination, asset, partition)

            kept = set() if replaced is None else {f.path for f in replaced.files}
            copy: str | None = None

            def seal(written: WrittenFile) -> ExportManifest:
                nonlocal copy
                manifest = ExportManifest(
                    asset=asset,
                    partition=partition,
                    run_id=context.run_id,
                    created_at=datetime.now(UTC)
                    .isoformat(timespec="microseconds")
                    .replace("+00:00", "Z"),
                    format=options.format,
                    compression=options.compression,
                    files=[ManifestFile(name, written.bytes, written.sha256, written.rows)],
                    total_rows=written.rows,
                    columns=columns,
                    source=dict(source),
                    credential_policy=options.credential_policy,
                    previous_manifest=previous,
                    encryption=None if encryption is None else dict(encryption),
                )
                # The last look before anything is put in place: the data file as written
                # and the manifest that will describe it.
                findings = written.findings + [
                    Finding(destination.uri(key), str(number), what)
                    for number, line in enumerate(manifest.to_json().decode().splitlines(), 1)
                    for what in scanner.scan_text(line)
                ]
                if findings:
                    raise CredentialLeakError(_leak_message(asset, partition, findings))
                lease.ensure_held()  # the data file replaces the old one right after this
                if name in kept:  # same name as the version replaced: keep it to put back
                    copy = destination.keep_copy(f"{folder}/{name}")
                return manifest

            # The manifest is built and serialised before the data file is published, so
            # only an I/O failure can come between the two; then a file the replaced
            # version does not list is removed again, and one it does list (same name) is
            # put back from a copy: the previous version stays exactly as it was.
            try:
                written, manifest, manifest_bytes = _write_data_file(
                    destination, f"{folder}/{name}", options, produce, seal
                )
            except BaseException:
                if copy is not None:  # the file may have been replaced as the write ended
                    destination.put_back(copy, f"{folder}/{name}")
                raise
            try:
                stored = destination.size_of(written.key)
                if stored != written.bytes:
                    raise IntegrityError(
                        f"{destination.uri(written.key)}: the destination holds "
                        f"{'no file' if stored is None else f'{stored:,} bytes'} where "
                        f"{written.bytes:,} were written; nothing was published: run it again"
                    )
                lease.ensure_held()
                if before_manifest_write is not None:
                    before_manifest_write(key, manifest)
                # Compare-and-swap: published only over the very version read above.
                if (
                    destination.replace_if(key, manifest_bytes, None if found is None else found[1])
                    is None
                ):
                    raise ConcurrentPublishError(
                        f"{asset} {partition}: {MANIFEST_NAME} changed while this run wrote "
                        "(another writer ignored the partition lease); nothing was published "
                        "by this run: run it again"
                    )
            except BaseException:
                if copy is not None:
                    destination.put_back(copy, written.key)
                elif name not in kept:
                    destination.delete(written.key)
                raise
            if copy is not None:
                destination.delete(copy)
            # Files of the replaced version that the new one no longer lists (another format).
            for stale in sorted(kept - {f.path for f in manifest.files}):
                destination.delete(f"{folder}/{stale}")

        uri = destination.uri(written.key)
        verification = Verification(
            file=uri,
            rows=written.rows,
            bytes=written.bytes,
            sha256=written.sha256,
            stored_bytes=stored,
        )
        metadata: dict[str, Any] = {
            "dagster/uri": MetadataValue.text(uri),
            "dagster/partition_row_count": MetadataValue.int(written.rows),
            "size": MetadataValue.text(human_size(written.bytes)),
            "bytes": MetadataValue.int(written.bytes),
            # For Parquet and xlsx, which compress inside: the data's size in Arrow.
            "uncompressed_bytes": MetadataValue.int(written.uncompressed_bytes),
            "compression_ratio": MetadataValue.float(
                round(1 - written.bytes / written.uncompressed_bytes, 4)
                if written.uncompressed_bytes
                else 0.0
            ),
            "sha256": MetadataValue.text(written.sha256),
            "format": MetadataValue.text(options.format),
            "compression": MetadataValue.text(options.compression),
            "credential_policy": MetadataValue.text(options.credential_policy),
            **(
                {"credential_key_id": MetadataValue.text(str(encryption.get("key_id")))}
                if encryption
                else {}
            ),
            "manifest": MetadataValue.text(destination.uri(manifest_key(asset, partition))),
        }
        if table is not None:
            metadata["dagster/column_schema"] = MetadataValue.table_schema(table_schema(table))
        if isinstance(destination, LocalDestination):
            metadata["path"] = MetadataValue.path(str(destination.path(written.key)))
        return verification, metadata

    def load_input(self, context: InputContext) -> ExportManifest:
        """The published manifest of the upstream partition (data stays where it is)."""
        asset = "/".join(context.asset_key.path)
        partition = context.asset_partition_key
        manifest = read_manifest(self.open_destination(), manifest_key(asset, partition))
        if manifest is None:
            raise FileNotFoundError(
                f"{asset} partition {partition} has no {MANIFEST_NAME} in "
                f"{self.store.destination}: materialize it first"
            )
        return manifest


def selected_schema(schema: pa.Schema, fields: tuple[str, ...] | None, asset: str) -> pa.Schema:
    """The schema written: ``fields`` in their order, or every column."""
    if fields is None:
        return schema
    unknown = [name for name in fields if name not in schema.names]
    if unknown:
        raise ExportFieldsError(
            f"{asset} has no field {', '.join(map(repr, unknown))}; valid fields: "
            f"{', '.join(schema.names)}"
        )
    return pa.schema([schema.field(name) for name in fields])


def serialise_document(document: Mapping[str, Any], format: DocumentFormat) -> bytes:
    """A document as YAML or JSON, keys sorted: the same settings give the same bytes."""
    if format == "json":
        return (
            json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, default=_iso) + "\n"
        ).encode()
    text: str = yaml.safe_dump(
        dict(document), sort_keys=True, allow_unicode=True, default_flow_style=False, width=100
    )
    return text.encode()


def _iso(value: object) -> str:
    # TOML has dates and times; JSON does not.
    if isinstance(value, date | time):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _write_data_file(
    destination: Destination,
    key: str,
    options: ExportOptions | DocumentOptions | RenderedOptions,
    produce: Callable[[str, MeasuredStream], Produced],
    seal: Callable[[WrittenFile], ExportManifest],
) -> tuple[WrittenFile, ExportManifest, bytes]:
    """Stream one data file; ``seal`` makes its manifest (or refuses) before it is published."""
    entry = key.rsplit("/", 1)[-1].removesuffix(codecs.EXTENSIONS["zip"])
    with destination.open_write(key) as raw:
        stored = MeasuredStream(raw, hashed=True)
        with codecs.compressed(stored, options, entry_name=entry) as compressed:
            plain = MeasuredStream(compressed)
            produced = produce(key, plain)
        written = WrittenFile(
            key,
            produced.rows,
            stored.bytes,
            plain.bytes if produced.uncompressed_bytes is None else produced.uncompressed_bytes,
            stored.sha256,
            produced.findings,
        )
        manifest = seal(written)
        manifest_bytes = manifest.to_json()
    return written, manifest, manifest_bytes


def _write_batches(
    context: OutputContext,
    key: str,
    export: Export,
    schema: pa.Schema,
    plain: MeasuredStream,
    scanner: LeakScanner,
) -> Produced:
    """Validate, scan and write every batch of ``export`` in its format."""
    findings: list[Finding] = []
    text = TextScan(scanner, key) if export.options.format in _TEXT_FORMATS else None
    if text is not None:
        plain.tap = text.feed  # the text as a reader sees it, before the codec
    try:
        rows, arrow_bytes = _write_rows(
            context, key, export, schema, plain, scanner, text, findings
        )
    except BaseException:
        if text is not None:
            text.close()  # the scan thread stops with the write
        raise
    if text is not None:
        return Produced(rows, text.finish())
    return Produced(rows, findings, arrow_bytes)


def _write_rows(
    context: OutputContext,
    key: str,
    export: Export,
    schema: pa.Schema,
    plain: MeasuredStream,
    scanner: LeakScanner,
    text: TextScan | None,
    findings: list[Finding],
) -> tuple[int, int]:
    """Rows and Arrow bytes written; batches of formats scanned by value add to ``findings``."""
    rows = 0
    arrow_bytes = 0
    last_report = clock.monotonic()
    writer = formats.open_format_writer(plain, schema, export.options)
    for batch in export.batches:
        if not batch.schema.equals(export.schema):
            raise ExportSchemaError(
                f"a batch of {key} does not match the declared schema: got "
                f"{batch.schema}, declared {export.schema}"
            )
        for field, column in zip(batch.schema, batch.columns, strict=True):
            if not field.nullable and column.null_count:
                raise ExportSchemaError(
                    f"{key}: column {field.name} is declared not null but a batch "
                    f"holds {column.null_count} null(s)"
                )
        if schema is not export.schema:
            batch = batch.select(schema.names)
        if text is None:
            findings += scan_batch(scanner, key, batch, rows + 1)
        writer.write(batch)
        rows += batch.num_rows
        arrow_bytes += batch.nbytes
        if clock.monotonic() - last_report >= PROGRESS_EVERY_SECONDS:
            context.log.info(f"{key}: {rows:,} rows written")
            last_report = clock.monotonic()
    writer.close()
    return rows, arrow_bytes


def _one_day(context: OutputContext, obj: AnyExport) -> DailyExports:
    """A value for the run's one partition, as the days of a run."""
    keys = context.asset_partition_keys
    if len(keys) != 1:
        raise TypeError(
            f"{context.asset_key.path[-1]} runs {len(keys)} partitions but returned one "
            f"{type(obj).__name__}; return DailyExports (one export a day)"
        )
    return DailyExports.of({keys[0]: obj})


def _leak_message(asset: str, partition: str, findings: list[Finding]) -> str:
    shown = "; ".join(str(finding) for finding in findings[:3])
    more = f" (and {len(findings) - 3} more)" if len(findings) > 3 else ""
    return (
        f"{asset} {partition}: {len(findings)} credential leak(s) in what was about to be "
        f"published: {shown}{more}; nothing was published and the partition keeps its "
        "previous version. Keep the credential policy at redact, encrypt or reference, and "
        "check the source data named above"
    )


def human_size(size: int) -> str:
    """``size`` bytes for people: 812 B, 26.4 MB (powers of 1000, as file managers show)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover


def table_schema(schema: pa.Schema) -> TableSchema:
    """The columns of an Arrow schema as Dagster shows them (``dagster/column_schema``)."""
    return TableSchema(
        columns=[
            TableColumn(
                name=column.name,
                type=str(column.type),
                constraints=TableColumnConstraints(nullable=column.nullable),
            )
            for column in schema
        ]
    )


class ExportTooLargeError(ValueError):
    """The export's estimated size exceeds EXPORT_MAX_BYTES; nothing was written."""


def max_export_bytes() -> int | None:
    """``EXPORT_MAX_BYTES`` (read when an export runs), or None for no limit."""
    return current_settings().max_bytes


def _guard_size(destination: Destination, asset: str, partition: str, export: Export) -> None:
    """Estimate the export from its first batch and refuse it before writing when too big."""
    first = next(export.batches, None)
    if first is None:
        return
    export.batches = itertools.chain([first], export.batches)
    if first.num_rows == 0:
        return
    rows = max(export.estimated_rows or 0, first.num_rows)
    check_room(destination, asset, partition, rows=rows, row_bytes=first.nbytes / first.num_rows)


def check_room(
    destination: Destination, asset: str, partition: str, *, rows: int, row_bytes: float
) -> None:
    """Refuse an export of about ``rows * row_bytes`` bytes over the limit or the free space."""
    estimate = int(rows * row_bytes)
    limit = max_export_bytes()
    if limit is not None and estimate > limit:
        raise ExportTooLargeError(
            f"{asset} {partition} would be about {estimate:,} bytes ({rows:,} rows × "
            f"{row_bytes:,.0f} bytes a row), over EXPORT_MAX_BYTES={limit:,}: select fewer "
            "fields or rows, or raise EXPORT_MAX_BYTES; nothing was written"
        )
    if isinstance(destination, LocalDestination):
        free = shutil.disk_usage(_existing_ancestor(destination.root)).free
        if estimate > free:
            raise DestinationError(
                f"no space left on the device of {destination.root} for {asset} {partition}: "
                f"it needs about {estimate:,} bytes and {free:,} are free; free space or set "
                "EXPORT_DESTINATION elsewhere; nothing was written and the previous export is "
                "intact"
            )


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def read_manifest(destination: Destination, key: str) -> ExportManifest | None:
    """The manifest at ``key``, or None; ``ManifestError`` if it names unsafe paths."""
    data = destination.read_bytes(key)
    return None if data is None else ExportManifest.from_json(data, where=destination.uri(key))


def _previous_manifest(
    destination: Destination, asset: str, partition: str
) -> PreviousManifest | None:
    earlier = sorted(
        (
            name.removeprefix(PARTITION_FOLDER_PREFIX)
            for name in destination.list_folders(asset)
            if name.startswith(PARTITION_FOLDER_PREFIX)
            and is_partition_key(name.removeprefix(PARTITION_FOLDER_PREFIX))
        ),
        reverse=True,
    )
    for candidate in earlier:
        if candidate >= partition:
            continue
        data = destination.read_bytes(manifest_key(asset, candidate))
        if data is not None:
            return PreviousManifest(candidate, sha256_hex(data))
    return None
