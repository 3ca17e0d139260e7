"""The CLI's Dagster instance: DAGSTER_HOME's, opened by one process at a time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from dagster import DagsterInstance


@contextmanager
def open_instance(home: Path) -> Iterator[DagsterInstance]:
    """``DagsterInstance.get()`` of ``home`` (DAGSTER_HOME), with the folder locked while it opens.

    The first opening of an instance creates its SQLite storage. Two processes doing that at
    once on a new DAGSTER_HOME (two exports started by cron in the same minute) fail one of
    them: "table alembic_version already exists". An exclusive ``flock`` on the folder makes
    them take turns; it is released as soon as the instance is open, so runs are not
    serialized, only the opening (milliseconds once the storage exists).
    """
    from dagster import DagsterInstance

    from export_assets.lib.exports.destinations import folder_lock

    if not home.is_dir():
        raise click.ClickException(
            f"DAGSTER_HOME={home} is not a folder: create it and copy the repo's dagster.yaml "
            "into it (`make install` does so for .dagster), or point DAGSTER_HOME at an "
            "existing instance"
        )
    with folder_lock(home):
        instance = DagsterInstance.get()
    with instance:
        yield instance
