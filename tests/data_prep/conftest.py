"""Prepared real datasets, built once per test session, and a small copy of VQA-RAD's split folder."""
from __future__ import annotations

import json
import shutil
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


@pytest.fixture()
def small_rad(data_root: Path, tmp_path: Path) -> Path:
    """A small copy of the data_RAD layout: 30 train and 10 test QA with their images."""
    published = data_root / "vqa_rad" / "data_RAD"
    root = tmp_path / "data_RAD"
    (root / "images").mkdir(parents=True)
    for name, count in (("trainset.json", 30), ("testset.json", 10)):
        items = json.loads((published / name).read_text())[:count]
        (root / name).write_text(json.dumps(items))
        for item in items:
            shutil.copy(data_root / "vqa_rad" / "VQA_RAD Image Folder" / item["image_name"], root / "images")
    return root
