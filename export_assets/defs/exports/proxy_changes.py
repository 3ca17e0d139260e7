"""``proxy_changes``: what changed in the pool during each UTC day, the pool's incremental view."""
# No "from __future__ import annotations": Dagster reads the config and resource annotations.

from collections.abc import Iterator

import pyarrow as pa
from dagster import MetadataValue
from pydantic import Field, field_validator

from export_assets.defs.exports.daily import DayContext, daily_export
from export_assets.defs.source import DATABASE
from export_assets.lib.security.credentials import mask_columns
from export_assets.lib.exports import Export
from export_assets.defs.exports.config import ExportConfig
from export_assets.lib.exports.export import closed_on_error
from export_assets.defs.partitions import (
    next_day,
    partition_day,
)
from export_assets.defs.resources.proxywhirl import ProxyWhirlSource
from export_assets.lib.source.changes import (
    CHANGE_KINDS,
    CHANGES_SCHEMA,
    ChangeKind,
    ChangeKindChoice,
    pool_changes,
)

# Free-text URL columns that could carry user:pass@ if a source put it there.
_URL_COLUMNS = ("url", "source_url")


class ProxyChangesConfig(ExportConfig):
    """Run config of ``proxy_changes``."""

    # An unknown name in fields is refused at launch.
    field_names = tuple(CHANGES_SCHEMA.names)

    changes: list[ChangeKindChoice] | None = Field(
        default=None,
        description=(
            "Kinds of change to export: added (discovered during the day), removed (deleted "
            "from ProxyWhirl: reported the day after its last validation), status_changed "
            "(health_status at the end of the day differs from the day before). Unset: all "
            "three. The manifest counts every kind either way."
        ),
    )

    @field_validator("changes")
    @classmethod
    def _changes_is_a_selection(
        cls, changes: list[ChangeKindChoice] | None
    ) -> list[ChangeKindChoice] | None:
        if changes is not None and not changes:
            raise ValueError(
                "changes is empty: list the kinds to export (added, removed, status_changed), "
                "or leave it unset for all"
            )
        return changes

    def kinds(self) -> tuple[ChangeKind, ...]:
        """The kinds of change selected, in export order."""
        if self.changes is None:
            return CHANGE_KINDS
        selected = {choice.value for choice in self.changes}
        return tuple(kind for kind in CHANGE_KINDS if kind in selected)


@daily_export(
    deps=[DATABASE],
    schema=CHANGES_SCHEMA,
    kinds={"sqlite", "csv"},
    description=(
        "What changed in the proxy pool during the partition's UTC day, against the end of "
        "the day before: proxies added (discovered that day), removed (a deleted proxy, "
        "reported the day after its last validation) and status_changed (health_status "
        "from -> to), each with the proxy's fields as of the end of the day (of the day "
        "before, for removed ones). Ordered by change kind, then url. Never holds "
        "credentials."
    ),
)
def proxy_changes(
    context: DayContext, config: ProxyChangesConfig, proxywhirl: ProxyWhirlSource
) -> Export:
    day = partition_day(context.partition_key)
    end = next_day(day)
    # Both pools come from one snapshot; it is released once the changes are computed.
    with proxywhirl.open_snapshot() as snapshot:
        watermark = snapshot.validation_watermark(end)
        changes = pool_changes(snapshot, day, config.kinds())
    with closed_on_error(changes.close):
        counts = dict(changes.counts)
        source = {
            "database": proxywhirl.database,
            "as_of_from": f"{day.isoformat()}T00:00:00Z",
            "as_of_to": f"{end.isoformat()}T00:00:00Z",
            "validation_results_max_id": watermark,
            "changes": counts,
            "changes_exported": list(changes.kinds),
        }
        context.log.info(
            f"pool changes from {source['as_of_from']} to {source['as_of_to']}: "
            + ", ".join(f"{count} {kind}" for kind, count in counts.items())
            + f"; exporting {', '.join(changes.kinds)}"
        )
        context.add_output_metadata(
            {f"changes_{kind}": MetadataValue.int(count) for kind, count in counts.items()}
        )
    return Export(
        schema=CHANGES_SCHEMA,
        batches=_masked(changes.batches()),
        options=config.options(),
        source=source,
        close=changes.close,
    )


def _masked(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    return (mask_columns(batch, _URL_COLUMNS) for batch in batches)
