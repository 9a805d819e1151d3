"""Paths of the published MEVF/QCR files used by the weight-loading tests."""
from pathlib import Path

import pytest

DATA_RAD = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "vqa_rad" / "data_RAD"


@pytest.fixture(scope="session")
def data_rad() -> Path:
    if not DATA_RAD.is_dir():
        pytest.skip(f"published VQA-RAD files not found at {DATA_RAD}")
    return DATA_RAD
