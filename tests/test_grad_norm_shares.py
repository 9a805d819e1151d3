"""experiments/grad_norm_shares.py: the per-module norms add up to the global norm the clip sees."""
from __future__ import annotations

from pathlib import Path

import pytest

from medvqa.cli import main as medvqa_main

REPO = Path(__file__).resolve().parents[1]


def test_module_norms_add_up_to_the_clipped_global_norm(tmp_path: Path, data_root: Path, experiment) -> None:
    data = tmp_path / "synthetic"
    medvqa_main(["prepare", "synthetic", "--out", str(data), "--synthetic-images", "16",
                 "--image-specs", "gray84,gray128", "--encoder-weights", str(data_root / "vqa_rad" / "data_RAD")])
    shares = experiment("grad_norm_shares")
    overrides = [f"data.root={data}", "train.progress=false", f"train.feature_cache={tmp_path / 'cache'}"]
    norms, totals, sizes, clip = shares.measure(REPO / "configs" / "vqa_rad" / "mevf_ban_frozen.yaml", overrides,
                                                steps=2, depth=2)
    assert len(totals) == 2 and clip == 0.25
    for step, total in enumerate(totals):
        assert abs(sum(n[step] ** 2 for n in norms.values()) - total ** 2) <= 1e-6 * total ** 2
    assert "visual.projections" in norms and not any(m.startswith("visual.encoders") for m in sizes)  # frozen: no gradient
    assert shares.module_of("visual.projections.cdae.weight", 2) == "visual.projections"


def test_a_missing_run_is_a_one_line_error(tmp_path: Path, experiment) -> None:
    with pytest.raises(SystemExit, match=r"missing/config.yaml: no such config file"):
        experiment("grad_norm_shares").main([str(tmp_path / "missing" / "config.yaml")])
