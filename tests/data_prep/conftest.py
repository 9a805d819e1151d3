"""Prepared real datasets, built once per test session."""
from __future__ import annotations

from pathlib import Path

import pytest

from data_prep.prepare import PrepareOptions, prepare


@pytest.fixture(scope="session")
def glove_subset(data_root: Path) -> Path:
    return data_root / "glove" / "glove6b_300d_subset.npz"


@pytest.fixture(scope="session")
def prepared_vqa_rad(data_root: Path, glove_subset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "vqa_rad"
    prepare("vqa-rad", out, PrepareOptions(source=data_root / "vqa_rad", glove=glove_subset, legacy_files=True))
    return out


@pytest.fixture(scope="session")
def prepared_slake(data_root: Path, glove_subset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "slake"
    prepare("slake", out, PrepareOptions(source=data_root / "slake" / "Slake1.0", glove=glove_subset,
                                         image_specs=["gray84", "rgb224"]))
    return out
