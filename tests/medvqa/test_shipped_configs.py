"""Every shipped VQA config trains one epoch on the synthetic data to the metrics recorded for it.

``shipped_config_metrics.json`` was recorded before heads and encoders owned their settings (the flat
``model`` section); the same numbers after the change show the configs still describe the same runs.
The visual branches load the published MEVF weights from the real data (``--encoder-weights``), and
the CLIP configs a tiny random checkpoint in the released PubMedCLIP format.

The one-epoch loss depends on the CPU's kernels: the same run differs by up to about 5e-4 relative
between CPU generations (oneDNN picks different convolution algorithms), so the loss is compared at
2e-3 relative and the accuracies, counts of questions, exactly.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medvqa.cli import main as cli_main
from medvqa.config import load_config
from medvqa.train import main as train_main
from pubmedclip.checkpoints import export_pubmedclip
from pubmedclip.models import random_clip

ROOT = Path(__file__).resolve().parents[2]
LOSS_TOLERANCE = 2e-3
RECORDED = json.loads((Path(__file__).with_name("shipped_config_metrics.json")).read_text())
SHIPPED = sorted(str(p.relative_to(ROOT)) for folder in ("vqa_rad", "slake", "synthetic")
                 for p in (ROOT / "configs" / folder).glob("*.yaml"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, data_root) -> tuple[Path, Path]:
    """The synthetic data (with the MEVF weights beside it) and a tiny PubMedCLIP-format checkpoint."""
    folder = tmp_path_factory.mktemp("shipped")
    data = folder / "synthetic"
    assert cli_main(["prepare", "synthetic", "--out", str(data), "--synthetic-images", "16",
                     "--image-specs", "gray84,gray128,rgb64",
                     "--encoder-weights", str(data_root / "vqa_rad" / "data_RAD")]) == 0
    torch.manual_seed(0)
    checkpoint = export_pubmedclip(random_clip("tiny-rn"), folder / "pubmedclip_tiny-rn.pth", extra={"best_epoch": 3})
    return data, checkpoint


def test_every_shipped_config_is_recorded() -> None:
    assert SHIPPED == sorted(RECORDED)


@pytest.mark.parametrize("config", SHIPPED)
def test_shipped_config_trains_as_recorded(config: str, inputs, tmp_path: Path) -> None:
    data, checkpoint = inputs
    shipped = load_config(ROOT / config)
    overrides = [f"data.root={data}", "train.epochs=1", "train.progress=false"]
    if shipped.type_classifier.epochs:
        overrides.append("type_classifier.epochs=1")
    if "clip" in shipped.model.visual:
        overrides.append(f"model.encoders.clip.weights={checkpoint}")
    assert train_main(["--config", str(ROOT / config), "--out", str(tmp_path / "run"), *overrides]) == 0
    row = json.loads((tmp_path / "run" / "metrics.json").read_text())[0]
    expected = RECORDED[config]
    assert {k: v for k, v in row.items() if "seconds" not in k}.keys() == expected.keys()
    for key, value in expected.items():
        rel = LOSS_TOLERANCE if "loss" in key else 1e-9
        assert row[key] == (value if value is None else pytest.approx(value, rel=rel, abs=1e-6)), key
