"""Fixtures for the retrieval tests: a tiny random CLIP saved as a checkpoint, and a few real ROCO images."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from pubmedclip.checkpoints import export_pubmedclip
from pubmedclip.encoder import ImageEncoder
from pubmedclip.models import LoadedClip, random_clip


def save_tiny(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    export_pubmedclip(random_clip("tiny-vit"), path)
    return path


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("ckpt") / "tiny.pth", seed=0)


@pytest.fixture(scope="session")
def other_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("ckpt") / "other.pth", seed=1)


@pytest.fixture(scope="session")
def encoder(checkpoint: Path) -> ImageEncoder:
    return ImageEncoder(checkpoint, batch_size=8)


@pytest.fixture(scope="session")
def loaded(encoder: ImageEncoder) -> LoadedClip:
    return encoder.loaded


@pytest.fixture(scope="session")
def roco(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pairs.csv`` (id, image, caption) of the first 16 staged real ROCO images; images stay in the data root."""
    rows = list(csv.DictReader((data_root / "roco_images" / "index.tsv").open(encoding="utf-8"), delimiter="\t"))[:16]
    out = tmp_path_factory.mktemp("roco") / "pairs.csv"
    with out.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("id", "image", "caption"))
        writer.writerows((r["roco_id"], str(data_root / "roco_images" / r["image"]), r["caption"].strip()) for r in rows)
    return out


@pytest.fixture(scope="session")
def roco_image_dir(roco: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of links to 8 of those real images."""
    folder = tmp_path_factory.mktemp("images")
    for row in list(csv.DictReader(roco.open(encoding="utf-8")))[:8]:
        (folder / Path(row["image"]).name).symlink_to(row["image"])
    return folder
