"""Train a VQA head: ``medvqa train --config FILE --out RUN_DIR [key=value ...]``.

The run directory holds everything about the run::

    config.yaml                 the resolved config (a different one is refused without --overwrite)
    metrics.csv, metrics.json   one row per epoch: loss, lr, train / val / test accuracy, seconds
    checkpoints/last.pt         model, optimizer, RNG and history: resuming continues from here
    checkpoints/best_val.pt     the model at the best validation accuracy (the sound protocol)
    checkpoints/best_test.pt    the model at the best test accuracy (only for the published protocols)
    type_classifier.pt          the question-type classifier that routes QCR questions
    results.json, predictions.csv   written by the evaluation at the end

Checkpoints are written to a temporary file and renamed, so an interrupted run never leaves a
broken one; running the same command again resumes after the last finished epoch.
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn
from tqdm import tqdm

from medvqa.batches import one_hot
from medvqa.config import Config, load_config, save_config, run_identity
from medvqa.data import PreparedDataset
from infra.cli import Parser
from infra.errors import UserError
from medvqa.experiment import (Experiment, build_experiment, build_type_classifier, check_data, checkpoint_state,
                               encoders_from_files, forward, predict, predict_open)
from medvqa.metrics import accuracy, prediction_frame
from infra.files import torch_save_atomic, write_text_atomic

FORMAT_VERSION = 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(prog="medvqa train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="YAML config, e.g. configs/vqa_rad/mevf_ban.yaml")
    parser.add_argument("--out", type=Path, required=True, help="run directory (created, or resumed)")
    parser.add_argument("--overwrite", action="store_true", help="discard a run with a different config in --out")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. train.epochs=2 data.root=DIR")
    return parser.parse_args(argv)


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def prepare_run_dir(out: Path, config: Config, overwrite: bool) -> None:
    """Create ``out``; refuse a different config already there unless ``overwrite``.

    Runtime settings (data location, device, threads, progress bars, ...) may differ; ``main`` saves
    the config with the new ones once the checkpoint's data digests matched the data found there.
    """
    saved = out / "config.yaml"
    if saved.exists():
        if run_identity(yaml.safe_load(saved.read_text()) or {}) != run_identity(config.to_dict()):
            if not overwrite:
                raise UserError(f"{out} holds a run with a different config ({saved}); "
                                "choose another --out or pass --overwrite")
            shutil.rmtree(out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)


def check_resumed_data(state: dict, config: Config, where: str) -> None:
    """The data at ``data.root`` must be the data the checkpoint trained on (checked by digests)."""
    trained_root = state["config"]["data"]["root"]
    if "data_digests" not in state:  # written before data digests: its path is all there is to check
        if Path(trained_root).resolve() != Path(config.data.root).resolve():
            raise UserError(f"{where} records no data digests; continue it with the data it was trained on: "
                            f"data.root={trained_root}")
        return
    check_data(state, PreparedDataset(config.data.root), where)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_at(epoch: int, config: Config) -> float:
    """Warm-up multipliers for the first epochs, then the last multiplier decayed at each decay epoch."""
    t = config.train
    if epoch < len(t.warmup):
        return t.lr * t.warmup[epoch]
    scale = t.warmup[-1] if t.warmup else 1.0
    return t.lr * scale * t.decay_rate ** sum(epoch >= e for e in t.decay_epochs)


def train_type_classifier(exp: Experiment, out: Path) -> nn.Module:
    """Fit (or reload) the closed/open question classifier; the epoch with the best validation accuracy is kept.

    The file is written once, after the last epoch, so a run interrupted while fitting refits from the start
    instead of reloading a half-trained classifier.
    """
    path = out / "type_classifier.pt"
    model = build_type_classifier(exp)
    if path.exists():
        model.load_state_dict(load_checkpoint(path)["model"])
        return model
    cfg, train, val = exp.config.type_classifier, exp.splits["train"], exp.splits["val"]
    check = val if len(val) else train
    torch.manual_seed(exp.config.train.seed + 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(exp.config.train.seed + 2)
    best: dict = {"accuracy": -1.0}
    for epoch in range(cfg.epochs):
        model.train()
        for idx in train.batches(cfg.batch_size, generator):
            loss = nn.functional.cross_entropy(model(train.tokens[idx]), train.is_open[idx].long())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        acc = (predict_open(model, check.tokens) == check.is_open).float().mean().item() * 100
        print(f"type classifier epoch {epoch}: {'val' if len(val) else 'train'} accuracy {acc:.2f}")
        if acc > best["accuracy"]:
            best = {"format": FORMAT_VERSION, "model": copy.deepcopy(model.state_dict()), "epoch": epoch, "accuracy": acc}
    torch_save_atomic(best, path)
    model.load_state_dict(best["model"])
    return model


def train_one_epoch(exp: Experiment, optimizer: torch.optim.Optimizer, epoch: int) -> dict[str, float]:
    """One pass over the shuffled training split; stops the run on a non-finite loss."""
    t, split, model = exp.config.train, exp.splits["train"], exp.model
    model.train()
    generator = torch.Generator().manual_seed(t.seed * 1000 + epoch)
    total_loss, correct, seen = 0.0, 0, 0
    steps = tqdm(list(split.batches(t.batch_size, generator)), desc=f"epoch {epoch}", leave=False,
                 disable=not t.progress)
    for step, idx in enumerate(steps):
        targets = one_hot(split.labels[idx], model.num_answers)  # [B, A]
        output = forward(exp, split, idx)
        loss = model.loss(output, targets, split.is_open[idx])
        if not torch.isfinite(loss):
            raise UserError(f"loss is {loss.item()} at epoch {epoch} step {step}: run stopped; "
                            "the last good checkpoint is kept in checkpoints/last.pt")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.trainable_parameters(), t.clip_norm)
        optimizer.step()
        total_loss += loss.item() * len(idx)
        hits = targets.gather(1, output.logits.detach().float().argmax(1, keepdim=True))
        correct += int(hits.sum().item())
        seen += len(idx)
        steps.set_postfix(loss=f"{total_loss / seen:.4f}")
    return {"train_loss": total_loss / seen, "train_acc": 100.0 * correct / seen}


def evaluate_epoch(exp: Experiment, router: nn.Module | None) -> dict[str, float | None]:
    """Validation and test accuracy with gold routing, and test accuracy routed by the type classifier."""
    row: dict[str, float | None] = {}
    answer_set = set(exp.answers)
    for name in ("val", "test"):
        split = exp.splits[name]
        if not len(split):
            continue
        routes = ["OPEN" if o else "CLOSED" for o in split.is_open.tolist()]
        frame = prediction_frame(split.records, predict(exp, split), routes, answer_set)
        row.update({f"{name}_{k}": v for k, v in accuracy(frame).items() if k in ("open", "closed", "overall")})
    if router is not None:
        test = exp.splits["test"]
        is_open = predict_open(router, test.tokens)
        routes = ["OPEN" if o else "CLOSED" for o in is_open.tolist()]
        frame = prediction_frame(test.records, predict(exp, test, is_open), routes, answer_set)
        row.update({f"test_routed_{k}": v for k, v in accuracy(frame).items() if k in ("open", "closed", "overall")})
    return row


def write_metrics(history: list[dict], out: Path) -> None:
    """``metrics.csv`` and ``metrics.json``, each written to a temporary file and renamed."""
    write_text_atomic(out / "metrics.csv", pd.DataFrame(history).to_csv(index=False))
    write_text_atomic(out / "metrics.json", json.dumps(history, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    out = args.out
    prepare_run_dir(out, config, args.overwrite)
    last_path = out / "checkpoints" / "last.pt"
    state = load_checkpoint(last_path) if last_path.exists() else None
    if state is not None:
        check_resumed_data(state, config, str(last_path))
    if state is not None and state["epoch"] + 1 >= config.train.epochs:
        save_config(config, out / "config.yaml")
        print(f"{out}: already trained for {config.train.epochs} epochs; nothing to do")
        return 0

    t = config.train
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.use_deterministic_algorithms(t.deterministic, warn_only=True)
    seed_everything(t.seed)
    exp = build_experiment(config, state, where=str(last_path))
    save_config(config, out / "config.yaml")
    model = exp.model
    from_files = encoders_from_files(model, config)  # frozen weights the checkpoints need not repeat
    router = train_type_classifier(exp, out) if config.type_classifier.epochs > 0 else None
    optimizer = torch.optim.Adamax(model.trainable_parameters(), lr=lr_at(0, config))
    history: list[dict] = []
    best = {"val": -1.0, "test": -1.0}
    start = 0
    torch.manual_seed(t.seed + 1)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        history, best, start = state["history"], state["best"], state["epoch"] + 1
        print(f"resuming {out} after epoch {state['epoch']}")
    n_params = sum(p.numel() for p in model.trainable_parameters())
    print(f"{config.model.name} on {exp.ds.name}: {len(exp.splits['train'])} train / {len(exp.splits['val'])} val / "
          f"{len(exp.splits['test'])} test QA, {len(exp.answers)} answers, {n_params / 1e6:.2f} M trainable parameters")

    for epoch in range(start, t.epochs):
        began = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch, config)
        row = {"epoch": epoch, "lr": lr_at(epoch, config), **train_one_epoch(exp, optimizer, epoch)}
        row["train_seconds"] = round(time.perf_counter() - began, 2)
        row.update(evaluate_epoch(exp, router))
        row["seconds"] = round(time.perf_counter() - began, 2)
        history.append(row)
        summary = {"format": FORMAT_VERSION, "model": checkpoint_state(model, from_files), "epoch": epoch,
                   "encoders_from_files": from_files, "config": config.to_dict(), "answers": exp.answers,
                   "data_digests": exp.data_digests}
        if "val_overall" not in row or row["val_overall"] > best["val"]:  # no validation split: the last epoch
            best["val"] = row.get("val_overall", -1.0)
            torch_save_atomic({**summary, "selected_by": "val_overall"}, out / "checkpoints" / "best_val.pt")
        test_score = row.get("test_routed_overall", row["test_overall"])
        if test_score > best["test"]:
            best["test"] = test_score
            torch_save_atomic({**summary, "selected_by": "test_overall"}, out / "checkpoints" / "best_test.pt")
        torch_save_atomic({**summary, "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
                           "history": history, "best": best}, last_path)
        write_metrics(history, out)
        print(f"epoch {epoch}: loss {row['train_loss']:.4f} train {row['train_acc']:.2f} "
              f"val {row.get('val_overall', '- (no split)')} test {row['test_overall']} ({row['seconds']:.1f} s)")

    from medvqa.evaluate import evaluate_run

    evaluate_run(out, "sound", device=t.device)
    return 0
