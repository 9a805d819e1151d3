"""The real OA packages and .nxml files."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def pmc_oa(data_root: Path) -> Path:
    return data_root / "pmc_oa"
