"""Reproduction-sized run (about 35 minutes on 2 CPU cores): ``pytest -m slow``.

MEVF-BAN on real VQA-RAD with the full published recipe; measured 60.3-61.6 % overall (seeds 1204, 1,
2), so a drop below 58 % means a regression in the data, model or training path.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from data_prep.prepare import PrepareOptions, prepare
from medvqa import train
from medvqa.evaluate import evaluate_run

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mevf_ban_full_recipe_on_vqa_rad(data_root: Path, tmp_path: Path) -> None:
    data = tmp_path / "vqa_rad"
    prepare("vqa-rad", data, PrepareOptions(source=data_root / "vqa_rad", image_specs=["gray84", "gray128"],
                                            glove=data_root / "glove" / "glove6b_300d_subset.npz"))
    weights = data_root / "vqa_rad" / "data_RAD"
    run = tmp_path / "run"
    assert train.main(["--config", str(REPO / "configs/vqa_rad/mevf_ban.yaml"), "--out", str(run),
                       f"data.root={data}", "train.progress=false", "train.device=auto",
                       f"model.encoders.maml.weights={weights / 'pretrained_maml.weights'}",
                       f"model.encoders.cdae.weights={weights / 'pretrained_ae.pth'}"]) == 0
    sound = evaluate_run(run, "sound")
    assert sound["overall"] >= 58.0 and sound["n_open"] + sound["n_closed"] == 451
    legacy = evaluate_run(run, "mevf-legacy")
    assert legacy["n_open"] + legacy["n_closed"] == 308
