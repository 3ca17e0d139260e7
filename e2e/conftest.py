"""Fixtures of the end-to-end suites: `make e2e` and `make e2e-distributed`, not `make test`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from e2e.stack import ROOT


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """``build/e2e/<test>/``: screenshots and logs a person can open after the run."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    folder = ROOT / "build" / "e2e" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
