"""What a daily export's step hands its IO manager: one export per day of the run, made lazily.

A run covers one UTC day (a schedule, a launchpad run) or a range of days (a backfill run,
``BackfillPolicy.multi_run``). Each day stays its own partition: its own export, data file,
manifest, lease and checks. The IO manager asks for each day's export in turn, so a day's
source is read only while that day is written, and it records here what it proved of each
day, for the asset's step to report as check results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from export_assets.lib.exports.export import DocumentExport, Export, RenderedExport

if TYPE_CHECKING:
    from export_assets.lib.exports.verify import Verification
    from export_assets.lib.security.leaks import KnownCredentials, LeakScanner

AnyExport = Export | DocumentExport | RenderedExport


def _not_made() -> AnyExport:
    raise RuntimeError("this day has no export to make")


@dataclass
class Day:
    """One day of a run: its partition key, how to make its export, metadata the asset added."""

    partition: str
    make: Callable[[], AnyExport] = _not_made
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class DailyExports:
    """The days of one run of an export asset, in partition order."""

    days: list[Day]
    folder: str | None = None
    """Where the days go (``backup/proxy_list``...); unset: the asset key's path."""
    verified: dict[str, Verification] = field(default_factory=dict)
    known: KnownCredentials | None = None
    scanner: LeakScanner | None = None
    """The scanner built from ``known`` for the writes, kept for the step's own checks."""

    def __iter__(self) -> Iterator[Day]:
        return iter(self.days)

    def __len__(self) -> int:
        return len(self.days)

    @classmethod
    def of(cls, exports: Mapping[str, AnyExport]) -> DailyExports:
        """Exports already made, by partition key (tests, and one-off callers)."""
        return cls([Day(key, (lambda e=export: e)) for key, export in exports.items()])  # type: ignore[misc]
