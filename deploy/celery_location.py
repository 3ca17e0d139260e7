"""The code location with the Celery executor: every step of every run becomes a Celery task.

The same assets, jobs and resources as ``export_assets.definitions``; only the executor
differs. Its broker and backend come from ``deploy/celery.yaml`` (the file the workers read
too), whose URLs come from the environment. Load it with ``-w deploy/workspace.celery.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from dagster_celery import celery_executor

from export_assets.definitions import code_location

CELERY_CONFIG = Path(__file__).with_name("celery.yaml")


def _executor_config() -> dict[str, Any]:
    """``execution.config`` of celery.yaml: ``{env: NAME}`` values, resolved at run time."""
    config: dict[str, Any] = yaml.safe_load(CELERY_CONFIG.read_text())["execution"]["config"]
    return config


defs = code_location(celery_executor.configured(_executor_config(), name="celery"))
