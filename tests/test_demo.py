"""The main job on the built-in dataset: prepare, train, evaluate, compare with the majority answer."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from medvqa.cli import main, majority_accuracy


def test_majority_accuracy() -> None:
    assert majority_accuracy(["yes", "no", "yes"], ["yes", "no", "no", "yes"]) == 50.0


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", "--out", str(tmp_path), "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "dataset synthetic" in out and "majority answer" in out
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["protocol"] == "sound" and results["n_open"] + results["n_closed"] == 320
    assert main(["demo", "--out", str(tmp_path), "--epochs", "2"]) == 0  # finished: reused, not retrained
    assert "using prepared data" in capsys.readouterr().out
