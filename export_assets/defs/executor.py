"""The executor every job of the code location runs with, unless its run config says otherwise."""

from __future__ import annotations

from dagster import Field, multi_or_in_process_executor

# definitions.py gives it to the code location: every run executes its steps in the run
# worker's own process, unless its run config asks
# for `execution: {config: {multiprocess: {max_concurrent: N}}}` (the launchpad shows both).
# A day of daily_export_job is 6 asset steps and 12 check steps, each working for ~1 s;
# Dagster's default starts a process per step, each importing the code location (~5 s of
# CPU). Measured on 2 shared cores through the UI path (bench/ui_path.py, issue 14): a 1-day
# backfill 251 s by default vs 48 s in process; 7 days 573 s with a forkserver preloading
# the code location vs 146 s in process (the CLI: 82 s). A large machine is still used: a
# backfill runs up to 10 days per run, the instance runs several runs at once (dagster.yaml),
# and the gzip codec deflates on a thread pool inside the step.
export_executor = multi_or_in_process_executor.configured(
    lambda config: config,
    name="export_executor",
    config_schema=Field(
        multi_or_in_process_executor.config_schema.config_type,
        default_value={"in_process": {}},
        is_required=False,
    ),
    description="In process by default; `multiprocess` (a process per step) on request.",
)
