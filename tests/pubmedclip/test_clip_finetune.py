"""Fine-tuning: distributed gradients, resume, run-directory rules, config errors, and a real-image run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import yaml
from clip_testutils import write_images

from infra.errors import UserError
from pubmedclip import finetune as finetune_module
from pubmedclip.checkpoints import load_clip
from pubmedclip.cli import main
from pubmedclip.config import load_config

HERE = Path(__file__).parent


def test_two_process_gradients_equal_one_process(tmp_path: Path) -> None:
    sys.path.insert(0, str(HERE))
    import ddp_grad_check

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parents[1])}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        str(HERE / "ddp_grad_check.py"),
        str(tmp_path / "grads.pt"),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    distributed = torch.load(tmp_path / "grads.pt", weights_only=True)

    torch.manual_seed(0)
    loaded = ddp_grad_check.random_clip("tiny-vit")
    single = ddp_grad_check.gradients(loaded.model, *ddp_grad_check.fixed_batch(loaded))
    assert set(single) == set(distributed)
    for name, grad in single.items():
        assert (distributed[name] - grad).abs().max() <= 1e-5 * grad.abs().max() + 1e-12, name


def _synthetic_config(tmp_path: Path, epochs: int = 2) -> Path:
    images = write_images(tmp_path / "data" / "images", 12)
    rows = ["filepath,title"] + [f"images/{p.name},synthetic image number {i}" for i, p in enumerate(images)]
    (tmp_path / "data" / "pairs.csv").write_text("\n".join(rows) + "\n")
    config = {
        "model": {"arch": "tiny-vit", "load_pretrained": False},
        "data": {
            "train": str(tmp_path / "data" / "pairs.csv"),
            "val": str(tmp_path / "data" / "pairs.csv"),
            "num_workers": 0,
        },
        "train": {
            "lr": 1e-3,
            "epochs": epochs,
            "batch_size": 4,
            "grad_accum": 2,
            "warmup_steps": 1,
            "eval_batch_size": 12,
        },
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_resume_equals_uninterrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _synthetic_config(tmp_path)
    assert main(["finetune", "--config", str(config), "--out", str(tmp_path / "full")]) == 0

    real_epoch, calls = finetune_module.train_one_epoch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the machine stops during epoch 2
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(finetune_module, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(["finetune", "--config", str(config), "--out", str(tmp_path / "cut")])
    monkeypatch.setattr(finetune_module, "train_one_epoch", real_epoch)
    assert main(["finetune", "--config", str(config), "--out", str(tmp_path / "cut")]) == 0

    full = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)
    for name, value in full["state_dict"].items():
        assert torch.equal(value, cut["state_dict"][name]), name
    drop = ("pairs_per_s",)
    assert [{k: v for k, v in row.items() if k not in drop} for row in full["history"]] == [
        {k: v for k, v in row.items() if k not in drop} for row in cut["history"]
    ]
    assert len((tmp_path / "cut" / "metrics.csv").read_text().splitlines()) == 1 + 3  # header, epochs 0-2


def test_run_directory_refuses_a_different_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = _synthetic_config(tmp_path, epochs=1)
    out = str(tmp_path / "run")
    assert main(["finetune", "--config", str(config), "--out", out]) == 0
    assert main(["finetune", "--config", str(config), "--out", out, "train.lr=5e-6"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and "train.lr" in error and "\n" not in error
    assert main(["finetune", "--config", str(config), "--out", out, "--overwrite", "train.lr=5e-6"]) == 0
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]["lr"] == 5e-6


def test_a_run_continues_on_another_device_and_extends_only_under_a_constant_schedule(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = _synthetic_config(tmp_path, epochs=1)
    out = str(tmp_path / "run")
    assert main(["finetune", "--config", str(config), "--out", out, "train.device=auto"]) == 0
    assert main(["finetune", "--config", str(config), "--out", out, "train.device=cpu", "train.eval_batch_size=3"]) == 0
    assert "already holds a finished run" in capsys.readouterr().out  # runtime settings: the same run
    assert main(["finetune", "--config", str(config), "--out", out, "train.epochs=2"]) == 2
    assert "cosine learning-rate schedule depends on the total" in capsys.readouterr().err
    constant = str(tmp_path / "constant")
    assert main(["finetune", "--config", str(config), "--out", constant, "train.schedule=constant"]) == 0
    assert main(["finetune", "--config", str(config), "--out", constant, "train.schedule=constant",
                 "train.epochs=2"]) == 0
    assert len((tmp_path / "constant" / "metrics.csv").read_text().splitlines()) == 1 + 3  # epochs 0-2


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=1", "unknown key train.lrr"),
        ("train.epochs=two", "train.epochs must be int"),
        ("train.precision=fp8", "train.precision must be one of fp32, bf16, fp16, got 'fp8'"),
        ("data.crop_scale=0.5", "data.crop_scale must be a list"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, override: str, message: str) -> None:
    config = _synthetic_config(tmp_path)
    with pytest.raises(UserError, match=message):
        load_config(config, [override])


def test_lr_schedule_warms_up_then_decays() -> None:
    values = [finetune_module.lr_multiplier(s, 10, 2, "cosine") for s in range(11)]
    assert values[0] == 0.5 and values[1] == 1.0 and values[-1] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(values[1:], values[2:]))


def test_end_to_end_on_slake_images(data_root: Path, tmp_path: Path, experiment: Callable[[str], ModuleType]) -> None:
    write_roco_layout = experiment("pubmedclip/slake_roco").write_roco_layout

    n_real = 15  # real ROCO caption lines whose images are absent: read, dropped and counted
    write_roco_layout(data_root, tmp_path / "roco", {"train": 120, "validation": 48}, roco_lines=n_real)
    config = {
        "model": {"arch": "tiny-vit", "load_pretrained": False},
        "data": {
            "train": str(tmp_path / "roco" / "train"),
            "val": str(tmp_path / "roco" / "validation"),
            "num_workers": 0,
        },
        "train": {
            "optimizer": "adamw",
            "lr": 5e-4,
            "weight_decay": 0.0,
            "warmup_steps": 2,
            "epochs": 4,
            "batch_size": 24,
            "eval_batch_size": 48,
        },
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    assert main(["finetune", "--config", str(tmp_path / "tiny.yaml"), "--out", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["data"]["train"]["missing_images"] == n_real and results["data"]["train"]["pairs"] == 120
    untrained, best = results["untrained"], results["best"]
    assert best["val_i2t_R@1"] >= untrained["val_i2t_R@1"] + 20 and best["val_t2i_R@1"] >= untrained["val_t2i_R@1"] + 20
    assert len(json.loads((run / "metrics.json").read_text())) == 5

    best_path = run / "checkpoints" / "best.pt"
    assert load_clip(best_path).arch == "tiny-vit"
    assert main(["export", "--checkpoint", str(best_path), "--out", str(tmp_path / "pubmedclip_tiny.pth")]) == 0
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(tmp_path / "pubmedclip_tiny.pth"),
                "--data",
                str(tmp_path / "roco" / "validation"),
                "--out",
                str(tmp_path / "retrieval.json"),
            ]
        )
        == 0
    )
    retrieval = json.loads((tmp_path / "retrieval.json").read_text())
    assert retrieval["i2t_R@1"] == pytest.approx(best["val_i2t_R@1"], abs=1e-6)
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(best_path),
                "--task",
                "zeroshot",
                "--data",
                str(data_root / "slake" / "Slake1.0"),
                "--label",
                "modality",
                "--template",
                "{}",
                "--out",
                str(tmp_path / "zeroshot.json"),
            ]
        )
        == 0
    )
    zeroshot = json.loads((tmp_path / "zeroshot.json").read_text())
    assert zeroshot["classes"] == ["CT", "MRI", "X-Ray"] and 0 <= zeroshot["balanced_accuracy"] <= 100
    assert np.isfinite(zeroshot["accuracy"])


@pytest.mark.parametrize(
    "name, arch, batch", [("roco_vit_b32", "ViT-B/32", 64), ("roco_rn50", "RN50", 64), ("roco_rn50x4", "RN50x4", 32)]
)
def test_published_configs(name: str, arch: str, batch: int) -> None:
    cfg = load_config(HERE.parents[1] / "configs" / "pubmedclip" / f"{name}.yaml")
    assert (cfg.model.arch, cfg.train.batch_size, cfg.train.epochs) == (arch, batch, 50)
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.weight_decay) == ("adam", 1e-5, 5e-4)
    assert not cfg.data.hflip and load_config(HERE.parents[1] / "configs" / "pubmedclip" / "tiny.yaml")
