"""``medvqa grid``: cells planned from a grid file, skipped with their reason, resumed without re-running
finished ones, and reported."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import medvqa.train
from infra.errors import UserError
from medvqa.cli import main as cli_main
from medvqa.grid import CELL_FILE, load_grid, runner
from medvqa.grid.cli import main as grid_main
from medvqa.grid.spec import EncoderEntry, encoder_model

ROOT = Path(__file__).resolve().parents[3]
TINY = str(ROOT / "configs" / "synthetic" / "mevf_ban_tiny.yaml")


@pytest.fixture(scope="module")
def data(prepare_synthetic) -> Path:
    return prepare_synthetic("gray84,gray128")


def write_grid(path: Path, data: Path, **changes) -> Path:
    grid = {"title": "test grid", "datasets": {"synthetic": str(data)}, "heads": {"mevf_ban": TINY},
            "encoders": {"maml+cdae": {}, "maml": {}, "pubmedclip": {"clip": str(path.parent / "absent.pth"),
                                                                     "cdae": True}},
            "seeds": [0], "baseline": "maml+cdae", "overrides": ["train.epochs=1", "model.head.hidden_dim=16"],
            **changes}
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def test_cells_are_planned_with_the_encoders_settings(tmp_path: Path, data: Path) -> None:
    grid_file = write_grid(tmp_path / "grid.yaml", data, encoders={
        "maml+cdae": {}, "clip_tuned": {"clip": str(tmp_path / "c.pth"), "cdae": True, "freeze": False, "lr": 1e-4},
        "clip_frozen": {"clip": str(tmp_path / "c.pth"), "arch": "tiny-vit"}}, seeds=[0, 5])
    grid = load_grid(grid_file, tmp_path / "out")
    assert [c.name for c in grid.cells][:2] == ["synthetic/mevf_ban/maml+cdae/s0", "synthetic/mevf_ban/maml+cdae/s5"]
    by_name = {c.name: c for c in grid.cells}
    tuned = by_name["synthetic/mevf_ban/clip_tuned/s5"].config
    assert tuned["model"]["visual"] == ["clip", "cdae"] and tuned["model"]["freeze_visual"] is False
    assert tuned["train"]["visual_lr"] == 1e-4 and tuned["train"]["seed"] == 5 and tuned["train"]["epochs"] == 1
    frozen = by_name["synthetic/mevf_ban/clip_frozen/s0"].config["model"]
    assert frozen["visual"] == ["clip"] and frozen["freeze_visual"] == ["clip"]
    assert frozen["encoders"]["clip"] == {"weights": str(tmp_path / "c.pth"), "arch": "tiny-vit"}
    assert by_name["synthetic/mevf_ban/clip_frozen/s0"].skip == f"clip weights not found: {tmp_path / 'c.pth'}"
    assert by_name["synthetic/mevf_ban/maml+cdae/s0"].skip == ""


def test_command_line_overrides_come_after_the_grid_and_its_encoders(tmp_path: Path, data: Path) -> None:
    grid_file = write_grid(tmp_path / "grid.yaml", data, encoders={"maml": {"overrides": ["train.epochs=3"]}},
                           baseline=None)
    assert load_grid(grid_file, tmp_path / "out").cells[0].config["train"]["epochs"] == 3
    assert load_grid(grid_file, tmp_path / "out", ["train.epochs=7"]).cells[0].config["train"]["epochs"] == 7


@pytest.mark.parametrize(("changes", "message"), [
    ({"encoders": {"maml+nope": {}}, "baseline": None}, r"unknown visual encoder 'nope'"),
    ({"encoderz": {}}, r"encoderz"),
    ({"baseline": "clip"}, r"baseline 'clip' is not one of the encoders"),
    ({"encoders": {"maml": {"lr": "fast"}}, "baseline": None}, r"encoders.maml.lr"),
    ({"heads": {"mevf_ban": "configs/none.yaml"}}, r"config file not found: configs/none.yaml"),
    ({"encoders": {"a/b": {}}, "baseline": None}, r"encoders.a/b: a name may hold"),
    ({"seeds": [1, 1]}, r"seeds \[1, 1\] name a seed twice"),
    ({"encoders": {"maml": {"encoders": {"clipp": {"arch": "RN50"}}}}, "baseline": None},
     r"encoders.maml: settings for clipp, which this encoder does not use \(it uses maml\)"),
    ({"encoders": {"c": {"cdae": True}}, "baseline": None}, r"encoders.c: cdae: true .* needs clip: CHECKPOINT"),
])
def test_grid_file_mistakes_are_one_line_errors(tmp_path: Path, data: Path, changes: dict, message: str,
                                                capsys: pytest.CaptureFixture) -> None:
    grid_file = write_grid(tmp_path / "grid.yaml", data, **changes)
    with pytest.raises(UserError, match=message):
        load_grid(grid_file, tmp_path / "out")
    assert cli_main(["grid", "--grid", str(grid_file), "--out", str(tmp_path / "out")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_grid_runs_skips_and_resumes_without_rerunning(tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    fast = ["train.epochs=2", "model.freeze_visual=true"]
    grid_file = write_grid(tmp_path / "grid.yaml", data, seeds=[0, 1], overrides=[*fast, "model.head.hidden_dim=16"])
    out = tmp_path / "out"
    real_epoch, calls = medvqa.train.train_one_epoch, []

    def interrupted(exp, optimizer, epoch):  # the 4th epoch trained (2nd cell, epoch 1) is interrupted
        calls.append(epoch)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_epoch(exp, optimizer, epoch)

    monkeypatch.setattr(medvqa.train, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        grid_main(["--grid", str(grid_file), "--out", str(out)])
    # cells run seed by seed: after the baseline's seed 0 comes the other encoder's seed 0
    first, second = out / "cells/synthetic/mevf_ban/maml+cdae/s0", out / "cells/synthetic/mevf_ban/maml/s0"
    assert (first / CELL_FILE).is_file() and not (second / CELL_FILE).exists()
    assert (second / "checkpoints" / "last.pt").is_file()  # epoch 0 of the interrupted cell is kept
    finished_at = (first / CELL_FILE).stat().st_mtime_ns, (first / "metrics.json").stat().st_mtime_ns
    capsys.readouterr()

    monkeypatch.setattr(medvqa.train, "train_one_epoch", real_epoch)
    assert grid_main(["--grid", str(grid_file), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "6 cells: 1 done, 1 partial, 2 pending, 2 skipped" in printed
    assert f"resuming {second} after epoch 0" in printed and "cell synthetic/mevf_ban/maml+cdae/s0" not in printed
    assert ((first / CELL_FILE).stat().st_mtime_ns, (first / "metrics.json").stat().st_mtime_ns) == finished_at
    assert f"skipped synthetic/mevf_ban/pubmedclip/s0: clip weights not found: {tmp_path / 'absent.pth'}" in printed
    status = pd.read_csv(out / "status.csv")
    assert status.state.tolist() == ["done", "done", "done", "done", "skipped", "skipped"]
    cell = json.loads((second / CELL_FILE).read_text())
    assert cell["epochs"] == 2 and set(cell["results"]) == {"sound"}
    assert cell["results"]["sound"]["overall"] == json.loads((second / "results_sound.json").read_text())["overall"]
    assert (out / "report.html").is_file() and f"report: {out / 'report.html'}" in printed

    assert grid_main(["--grid", str(grid_file), "--out", str(out)]) == 0  # all finished: nothing trains
    assert "4 done, 0 partial, 0 pending, 2 skipped" in capsys.readouterr().out
    assert ((first / CELL_FILE).stat().st_mtime_ns, (first / "metrics.json").stat().st_mtime_ns) == finished_at

    write_grid(grid_file, data, seeds=[0, 1], overrides=[*fast, "model.head.hidden_dim=24"])
    with pytest.raises(UserError, match="cell synthetic/mevf_ban/maml\\+cdae/s0 was finished with another config "
                                        "\\(model.head.hidden_dim: 16 vs 24\\)"):
        grid_main(["--grid", str(grid_file), "--out", str(out)])


def test_only_runs_a_part_and_report_only_trains_nothing(tmp_path: Path, data: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    grid_file = write_grid(tmp_path / "grid.yaml", data, overrides=["train.epochs=1", "model.freeze_visual=true",
                                                                     "model.head.hidden_dim=16"])
    out = tmp_path / "out"
    assert grid_main(["--grid", str(grid_file), "--out", str(out), "--only", "*/maml/*"]) == 0
    assert "--only: 1 of them to run here" in capsys.readouterr().out
    status = pd.read_csv(out / "status.csv").set_index("encoder").state.to_dict()
    assert status == {"maml+cdae": "pending", "maml": "done", "pubmedclip": "skipped"}
    assert (out / "report.html").is_file()

    assert cli_main(["grid", "--grid", str(grid_file), "--out", str(out), "--only", "*/mevf_san/*"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --only '*/mevf_san/*' matches no cell of {grid_file} "
                                               "(cells are named like synthetic/mevf_ban/maml+cdae/s0)")
    (out / "report.html").unlink()
    assert grid_main(["--grid", str(grid_file), "--out", str(out), "--report-only"]) == 0
    assert not (out / "cells/synthetic/mevf_ban/maml+cdae/s0").exists() and (out / "report.html").is_file()


def test_the_report_can_go_to_another_folder_and_into_a_readme(tmp_path: Path, data: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    grid_file = write_grid(tmp_path / "grid.yaml", data, overrides=["train.epochs=1", "model.freeze_visual=true",
                                                                     "model.head.hidden_dim=16"])
    out, published, readme = tmp_path / "out", tmp_path / "results" / "study", tmp_path / "README.md"
    assert cli_main(["grid", "--grid", str(grid_file), "--out", str(out), "--report-only",
                     "--readme", str(readme)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --readme {readme} is not a file"
    assert not out.exists()  # refused before anything is written

    readme.write_text("# Study\n<!-- reproduce: results/study/tables.md -->\nold table\n<!-- /reproduce -->\nprose\n")
    assert grid_main(["--grid", str(grid_file), "--out", str(out), "--only", "*/maml/*",
                      "--report-dir", str(published), "--readme", str(readme)]) == 0
    assert "refreshed 1 blocks of" in capsys.readouterr().out
    assert {"status.csv", "report.html", "tables.md", "stats.json"} <= {p.name for p in published.iterdir()}
    assert not (out / "report.html").exists() and not (out / "status.csv").exists()
    text = readme.read_text()
    assert "old table" not in text and (published / "tables.md").read_text().strip() in text
    assert text.endswith("<!-- /reproduce -->\nprose\n")


def test_a_crashing_cell_is_recorded_and_the_grid_goes_on(tmp_path: Path, data: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture) -> None:
    grid_file = write_grid(tmp_path / "grid.yaml", data, overrides=["train.epochs=1", "model.freeze_visual=true",
                                                                     "model.head.hidden_dim=16"])
    out = tmp_path / "out"
    real = runner.train_and_evaluate

    def crash_on_maml(plan):
        if plan.encoder == "maml":
            raise RuntimeError("out of memory")
        return real(plan)

    monkeypatch.setattr(runner, "train_and_evaluate", crash_on_maml)
    assert grid_main(["--grid", str(grid_file), "--out", str(out)]) == 1
    assert "failed synthetic/mevf_ban/maml/s0: RuntimeError: out of memory" in capsys.readouterr().out
    status = pd.read_csv(out / "status.csv").set_index("encoder")
    assert status.state.to_dict() == {"maml+cdae": "done", "maml": "failed", "pubmedclip": "skipped"}
    assert status.reason["maml"] == "RuntimeError: out of memory" and (out / "report.html").is_file()

    monkeypatch.setattr(runner, "train_and_evaluate", real)
    assert grid_main(["--grid", str(grid_file), "--out", str(out)]) == 0  # retried, and the failure forgotten
    assert pd.read_csv(out / "status.csv").state.tolist() == ["done", "done", "skipped"]
    assert not (out / "cells/synthetic/mevf_ban/maml/s0.failed").exists()


def test_a_cell_another_process_trains_is_left_to_it(tmp_path: Path, data: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    grid_file = write_grid(tmp_path / "grid.yaml", data, overrides=["train.epochs=1", "model.freeze_visual=true",
                                                                     "model.head.hidden_dim=16"])
    out = tmp_path / "out"
    lock = out / "cells/synthetic/mevf_ban/maml/s0.lock"
    lock.parent.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; handle = open(sys.argv[1], 'w'); "
                              "fcntl.flock(handle, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
                              str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "locked"
        assert grid_main(["--grid", str(grid_file), "--out", str(out), "--only", "*/maml/*"]) == 0
    finally:
        other.kill()
    assert "cell synthetic/mevf_ban/maml/s0 is being trained by another process: left to it" in capsys.readouterr().out
    assert not (out / "cells/synthetic/mevf_ban/maml/s0").exists()
    assert grid_main(["--grid", str(grid_file), "--out", str(out), "--only", "*/maml/*"]) == 0  # released: it trains
    assert (out / "cells/synthetic/mevf_ban/maml/s0" / CELL_FILE).is_file()


def test_an_encoder_trains_at_its_own_learning_rate(tmp_path: Path, data: Path) -> None:
    """A grid entry's ``lr`` is ``train.visual_lr``: the trained encoders step at it, the head at ``train.lr``."""
    from medvqa.config import load_config
    from medvqa.experiment import build_experiment
    from medvqa.train import seed_everything

    overrides = [f"data.root={data}", "train.epochs=1", "model.head.hidden_dim=16", "train.visual_lr=1e-9",
                 "model.visual=[maml]", "model.encoders={}"]
    assert medvqa.train.main(["--config", TINY, "--out", str(tmp_path / "run"), *overrides]) == 0
    config = load_config(TINY, overrides)
    seed_everything(config.train.seed)
    before = build_experiment(config).model.state_dict()
    after = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    moved = {key: (after[key] - before[key]).abs().max().item() for key in before if before[key].is_floating_point()}
    encoder = [v for k, v in moved.items() if k.startswith("visual.encoders.maml.") and "running" not in k]
    assert encoder and max(encoder) < 1e-6  # about 1e-9 per step
    assert max(v for k, v in moved.items() if k.startswith("classifier.")) > 1e-3


@pytest.mark.parametrize("head_freeze, expected", [(True, ["clip", "cdae"]), (False, ["clip"]),
                                                   (["cdae"], ["clip", "cdae"]), (["maml"], ["clip"])])
def test_the_cdae_beside_a_clip_is_frozen_as_the_head_config_says(head_freeze, expected) -> None:
    entry = EncoderEntry(clip="c.pth", cdae=True)
    model = encoder_model(entry, "clip+cdae", {"name": "mevf_ban", "visual": ["maml", "cdae"], "freeze_visual": head_freeze})
    assert model["visual"] == ["clip", "cdae"] and model["freeze_visual"] == expected
