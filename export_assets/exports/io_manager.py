"""The one writer of the project: Export -> format -> codec -> destination, manifest last."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time as clock
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml
from dagster import ConfigurableIOManager, InputContext, MetadataValue, OutputContext
from pydantic import Field

from export_assets.exports import codecs, formats
from export_assets.exports.destinations import (
    DEBRIS_AGE,
    Destination,
    DestinationError,
    LocalDestination,
)
from export_assets.exports.export import (
    DocumentExport,
    DocumentFormat,
    DocumentOptions,
    Export,
    ExportOptions,
    RenderedExport,
    RenderedOptions,
)
from export_assets.exports.lease import DEFAULT_WAIT_SECONDS, PartitionLease
from export_assets.exports.manifest import (
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
from export_assets.exports.store import ExportStore
from export_assets.exports.streams import MeasuredStream
from export_assets.retries import fail_fast_on_permanent_errors, stop_on_interrupt
from export_assets.settings import env_number

PROGRESS_EVERY_SECONDS = 5.0


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
class WrittenFile:
    """What streaming one data file measured."""

    key: str
    rows: int
    bytes: int
    uncompressed_bytes: int
    sha256: str


class ExportIOManager(ConfigurableIOManager):
    """Writes each partition of an export asset to ``{destination}/{asset}/dt={day}/``.

    Data files first, streamed (never a whole table in memory) through the format and
    codec, hashed and counted on the way; ``_manifest.json`` last. A failure publishes
    nothing and leaves the partition's previous version as it was.
    """

    store: ExportStore = Field(description="Where exports are published.")
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
        return env_number(
            "EXPORT_LEASE_WAIT_SECONDS", DEFAULT_WAIT_SECONDS, float, what="a number of seconds"
        )

    def open_destination(self) -> Destination:
        """The destination this IO manager writes to."""
        return self.store.open()

    def handle_output(
        self, context: OutputContext, obj: Export | DocumentExport | RenderedExport
    ) -> None:
        # Transient faults propagate for the asset's retry policy; the rest fail at once.
        # An interrupt mid-write (SIGTERM, terminate) stops the step; it is never retried.
        with stop_on_interrupt(), fail_fast_on_permanent_errors():
            self._handle_output(context, obj)

    def _handle_output(
        self, context: OutputContext, obj: Export | DocumentExport | RenderedExport
    ) -> None:
        asset = context.asset_key.path[-1]
        if isinstance(obj, RenderedExport):
            self._publish_rendered(context, obj)
            return
        if isinstance(obj, DocumentExport):
            document = serialise_document(obj.document, obj.options.format)
            check_room(
                self.open_destination(), asset, context.partition_key if
                context.has_partition_key else "", rows=1, row_bytes=float(len(document)),
            )  # fmt: skip

            def write_document(key: str, plain: MeasuredStream) -> int:
                plain.write(document)
                return 1  # a document is one record

            self._publish(
                context,
                options=obj.options,
                extension=f".{obj.options.format}",
                columns=[],
                source=obj.source,
                produce=write_document,
                encryption=obj.encryption,
            )
            return
        if not isinstance(obj, Export):
            raise TypeError(
                f"{asset} returned {type(obj).__name__}; export assets return an Export or a "
                "DocumentExport"
            )
        with obj:
            schema = selected_schema(obj.schema, obj.options.fields, asset)
            if context.has_partition_key:
                _guard_size(self.open_destination(), asset, context.partition_key, obj)
            self._publish(
                context,
                options=obj.options,
                extension=formats.EXTENSIONS[obj.options.format],
                columns=columns_of(schema),
                source=obj.source,
                produce=lambda key, plain: _write_batches(context, key, obj, schema, plain),
                encryption=obj.encryption,
            )

    def _publish_rendered(self, context: OutputContext, obj: RenderedExport) -> None:
        """Publish a document the asset rendered (a PDF, a workbook) as is."""
        content = obj.content
        check_room(
            self.open_destination(), context.asset_key.path[-1], context.partition_key if
            context.has_partition_key else "", rows=1, row_bytes=float(len(content)),
        )  # fmt: skip

        def write_rendered(key: str, plain: MeasuredStream) -> int:
            plain.write(content)
            return obj.records

        self._publish(
            context,
            options=obj.options,
            extension=f".{obj.options.format}",
            columns=[],
            source=obj.source,
            produce=write_rendered,
        )

    def _publish(
        self,
        context: OutputContext,
        *,
        options: ExportOptions | DocumentOptions | RenderedOptions,
        extension: str,
        columns: list[dict[str, Any]],
        source: Mapping[str, Any],
        produce: Callable[[str, MeasuredStream], int],
        encryption: Mapping[str, Any] | None = None,
    ) -> None:
        asset = context.asset_key.path[-1]
        if not context.has_partition_key:
            raise ValueError(f"{asset} is not partitioned; exports are written per UTC day")
        partition = context.partition_key
        destination = self.open_destination()
        folder = partition_folder(asset, partition)
        name = data_file_name(asset, partition, extension + codecs.EXTENSIONS[options.compression])
        key = manifest_key(asset, partition)
        lease = PartitionLease(
            destination, asset, partition, context.run_id,
            wait_seconds=self.lease_wait(), log=context.log.warning,
        )  # fmt: skip
        # One writer per partition: everything from reading the replaced manifest to
        # deleting its stale files happens under the lease.
        with lease:
            found = destination.read_versioned(key)
            replaced = (
                None if found is None
                else ExportManifest.from_json(found[0], where=destination.uri(key))
            )  # fmt: skip
            for leftover in destination.remove_debris(folder, DEBRIS_AGE):
                context.log.warning(f"removed {leftover}, left by a run that was killed mid-write")
            previous = _previous_manifest(destination, asset, partition)

            kept = set() if replaced is None else {f.path for f in replaced.files}
            copy: str | None = None

            def seal(written: WrittenFile) -> ExportManifest:
                nonlocal copy
                lease.ensure_held()  # the data file replaces the old one right after this
                if name in kept:  # same name as the version replaced: keep it to put back
                    copy = destination.keep_copy(f"{folder}/{name}")
                return ExportManifest(
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
        metadata: dict[str, Any] = {
            "dagster/uri": MetadataValue.text(uri),
            "dagster/row_count": MetadataValue.int(written.rows),
            "bytes": MetadataValue.int(written.bytes),
            "uncompressed_bytes": MetadataValue.int(written.uncompressed_bytes),
            "compression_ratio": MetadataValue.float(
                1 - written.bytes / written.uncompressed_bytes
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
        if isinstance(destination, LocalDestination):
            metadata["path"] = MetadataValue.path(str(destination.path(written.key)))
        context.add_output_metadata(metadata)

    def load_input(self, context: InputContext) -> ExportManifest:
        """The published manifest of the upstream partition (data stays where it is)."""
        asset = context.asset_key.path[-1]
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
    produce: Callable[[str, MeasuredStream], int],
    seal: Callable[[WrittenFile], ExportManifest],
) -> tuple[WrittenFile, ExportManifest, bytes]:
    """Stream one data file; ``seal`` makes its manifest before the file is published."""
    entry = key.rsplit("/", 1)[-1].removesuffix(codecs.EXTENSIONS["zip"])
    with destination.open_write(key) as raw:
        stored = MeasuredStream(raw, hashed=True)
        with codecs.compressed(stored, options, entry_name=entry) as compressed:
            plain = MeasuredStream(compressed)
            rows = produce(key, plain)
        written = WrittenFile(key, rows, stored.bytes, plain.bytes, stored.sha256)
        manifest = seal(written)
        manifest_bytes = manifest.to_json()
    return written, manifest, manifest_bytes


def _write_batches(
    context: OutputContext, key: str, export: Export, schema: pa.Schema, plain: MeasuredStream
) -> int:
    """Validate and write every batch of ``export`` in its format; the number of rows."""
    rows = 0
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
        writer.write(batch)
        rows += batch.num_rows
        if clock.monotonic() - last_report >= PROGRESS_EVERY_SECONDS:
            context.log.info(f"{key}: {rows:,} rows written")
            last_report = clock.monotonic()
    writer.close()
    return rows


class ExportTooLargeError(ValueError):
    """The export's estimated size exceeds EXPORT_MAX_BYTES; nothing was written."""


def max_export_bytes() -> int | None:
    """``EXPORT_MAX_BYTES`` (read when an export runs), or None for no limit."""
    text = os.environ.get("EXPORT_MAX_BYTES", "").strip().replace("_", "")
    if not text:
        return None
    try:
        limit = int(text)
    except ValueError:
        raise ValueError(
            f"EXPORT_MAX_BYTES={text!r} is not a number of bytes: write e.g. 5000000000, or "
            "unset it for no limit"
        ) from None
    if limit <= 0:
        raise ValueError(f"EXPORT_MAX_BYTES={text!r} must be positive: unset it for no limit")
    return limit


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
