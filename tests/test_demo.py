"""The main job on the built-in dataset, reduced: prepare, fine-tune a small CLIP on the captions, run the
encoder grid (MAML+CDAE, untrained CLIP, fine-tuned CLIP) and write the report; run again, nothing redone."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from medvqa.cli import main
from medvqa.data import PreparedDataset
from medvqa.demo import majority_accuracy

ENCODERS = ["maml+cdae", "clip_untrained+cdae", "clip_finetuned+cdae"]


def test_majority_accuracy() -> None:
    assert majority_accuracy(["yes", "no", "yes"], ["yes", "no", "no", "yes"]) == 50.0


def test_demo_runs_the_study_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    reduced = ["--out", str(tmp_path), "--images", "48", "--clip-epochs", "1", "--epochs", "1", "--seeds", "0"]
    assert main(["demo", *reduced]) == 0
    out = capsys.readouterr().out
    assert "dataset synthetic" in out and "CLIP fine-tuned on the captions" in out and "majority answer" in out
    grid = yaml.safe_load((tmp_path / "study.yaml").read_text())
    assert list(grid["encoders"]) == ENCODERS and grid["baseline"] == "maml+cdae"
    assert grid["encoders"]["clip_finetuned+cdae"]["clip"] == str(tmp_path / "clip" / "finetune" / "checkpoints" / "best.pt")
    status = pd.read_csv(tmp_path / "study" / "status.csv")
    assert status.encoder.tolist() == ENCODERS and status.state.tolist() == ["done"] * 3
    n_test = len(PreparedDataset(tmp_path / "data").records("test"))
    for encoder in ENCODERS:
        results = json.loads((tmp_path / "study" / "cells" / "synthetic" / "mevf_ban" / encoder / "s0" /
                              "results_sound.json").read_text())
        assert results["protocol"] == "sound" and results["n_open"] + results["n_closed"] == n_test
    tuned = yaml.safe_load((tmp_path / "study" / "cells" / "synthetic" / "mevf_ban" / "clip_finetuned+cdae" / "s0" /
                            "config.yaml").read_text())["model"]
    assert tuned["visual"] == ["clip", "cdae"] and tuned["freeze_visual"] is True
    assert (tmp_path / "study" / "report.html").is_file() and f"report: {tmp_path / 'study' / 'report.html'}" in out

    assert main(["demo", *reduced]) == 0  # finished: reused, nothing retrained
    again = capsys.readouterr().out
    assert "using prepared data" in again and "already holds a finished run" in again
    assert "3 cells: 3 done, 0 partial, 0 pending, 0 skipped" in again
