"""The PreparedDataset API on a small synthetic dataset, and the CLI around it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from infra.errors import UserError
from medvqa.cli import main
from medvqa.data import PreparedDataset


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("p") / "synthetic"
    assert main(["prepare", "synthetic", "--out", str(out), "--synthetic-images", "30",
                 "--image-specs", "gray84,gray128,rgb224"]) == 0
    return out


def test_api(prepared: Path) -> None:
    ds = PreparedDataset(prepared)
    record = ds.records("test")[0]
    assert ds.images("gray128")[ds.image_row(record.image_id)].shape == (128, 128)
    assert ds.images("rgb224").shape == (30, 224, 224, 3) and ds.images("rgb224").dtype == np.uint8
    glove, tfidf = ds.word_embeddings()
    assert glove.shape == tfidf.shape == (ds.dictionary.ntoken, 300)
    ids = ds.dictionary.encode(record.question)
    assert len(ids) == 12 and ds.dictionary.padding_idx in ids
    assert ds.answers.label(record.answer) is not None or record.split == "test"
    with pytest.raises(UserError, match="no image cache 'rgb288'"):
        ds.images("rgb288")
    with pytest.raises(UserError, match="unknown split"):
        ds.records("dev")


def test_not_prepared(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a prepared dataset .*medvqa prepare"):
        PreparedDataset(tmp_path)


def test_summary(prepared: Path) -> None:
    summary = json.loads((prepared / "summary.json").read_text())
    counts = summary["counts"]
    assert sum(c["total"] for c in counts.values()) == len(PreparedDataset(prepared).all_records)
    assert summary["dictionary"]["ntoken"] == summary["dictionary"]["words"] + 1
    assert summary["disk_bytes"] > 0 and set(summary["unanswerable_test"]) == {"train", "train+val", "train+test"}


def test_demo_and_console_entry(tmp_path: Path, prepared: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "medvqa.cli", "prepare", "nonsense", "--out", str(tmp_path / "x")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: unknown dataset 'nonsense': choose from: slake, synthetic, vqa-rad"]
    assert main(["frobnicate"]) == 2
