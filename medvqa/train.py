"""Train a VQA head: ``medvqa train --config FILE --out RUN_DIR [key=value ...]``.

The run directory holds everything about the run::

    config.yaml                 the resolved config (a different one is refused without --overwrite)
    metrics.csv, metrics.json   one row per epoch: loss, lr, train / val / test accuracy, seconds
    checkpoints/resume.pt       optimizer, RNG, history and the epoch each checkpoint holds: resuming continues here
    checkpoints/last.pt         the model after the last finished epoch (the mevf-legacy protocol)
    checkpoints/best_val.pt     the model at the best validation accuracy (the sound protocol)
    checkpoints/best_test.pt    the model at the best test accuracy (the pubmedclip-legacy protocol)
    type_classifier.pt          the question-type classifier that routes heads routed by type (QCR)
    results.json, predictions.csv   written by the evaluation at the end

Each model is written once per epoch; the checkpoint names that hold the same epoch are hard links of
one file, so a run keeps at most three models and one optimizer state. Every file is written to a
temporary file and renamed, and ``resume.pt`` is written last: an interrupted run never leaves a
broken one, and running the same command again resumes after the last finished epoch. A finished
run is extended by asking for more epochs (``train.epochs=N``): the learning-rate schedule is a
function of the epoch alone, so the extended run is the run that would have trained that long.
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
from torch import nn

from infra.cli import Parser, positive_int
from infra.errors import UserError
from infra.files import link_atomic, torch_save_atomic, write_text_atomic
from infra.memory import reuse_freed_memory
from infra.progress import progress
from infra.runs import check_continuation
from medvqa.batches import one_hot
from medvqa.config import RUNTIME_KEYS, Config, load_config, read_run_config, run_identity, save_config
from medvqa.data import PreparedDataset
from medvqa.experiment import (
    Experiment,
    build_experiment,
    build_type_classifier,
    check_data,
    checkpoint_state,
    encoders_from_files,
    forward,
    predict,
    predict_open,
    resolve_device,
)
from medvqa.metrics import accuracy, prediction_frame
from medvqa.models import VQAOutput
from medvqa.protocols import EpochSelector, kept_checkpoints

FORMAT_VERSION = 2  # 1: last.pt also held the optimizer state (read when resuming)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(prog="medvqa train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="YAML config, e.g. configs/vqa_rad/mevf_ban.yaml")
    parser.add_argument("--out", type=Path, required=True, help="run directory (created, or resumed)")
    parser.add_argument("--overwrite", action="store_true", help="discard a run with a different config in --out")
    parser.add_argument("--stop-after", type=positive_int, metavar="N",
                        help="stop once N epochs of the schedule are trained (the schedule, learning rate included, "
                             "stays train.epochs long: run again without it to go on)")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. train.epochs=2 data.root=DIR")
    return parser.parse_args(argv)


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def check_run_dir(out: Path, config: Config, overwrite: bool) -> None:
    """Refuse a run of a different config already in ``out`` unless ``overwrite`` (then it is deleted).

    Runtime settings (data location, device, threads, progress bars, ...) may differ, and the number
    of epochs may grow (the schedule is a function of the epoch alone); ``main`` saves the config with
    the new ones once the checkpoint's data digests matched the data found there.
    """
    if not (out / "config.yaml").exists():
        return
    try:
        check_continuation(str(out), run_identity(read_run_config(out).to_dict()), run_identity(config.to_dict()),
                           RUNTIME_KEYS)
    except UserError:
        if not overwrite:
            raise
        shutil.rmtree(out)


def read_resume_state(out: Path) -> dict | None:
    """What resuming ``out`` needs: its last model with the optimizer, RNG, history and best scores."""
    checkpoints = out / "checkpoints"
    if (checkpoints / "resume.pt").is_file():
        return {**load_checkpoint(checkpoints / "last.pt"), **load_checkpoint(checkpoints / "resume.pt")}
    if not (checkpoints / "last.pt").is_file():
        return None
    state = load_checkpoint(checkpoints / "last.pt")  # format 1: one file held the model and the optimizer
    state["best"] = {"best_val": state["best"]["val"], "best_test": state["best"]["test"]}
    return state


def save_epoch(out: Path, model_state: dict, chosen: list[str], resume: dict) -> None:
    """Write this epoch's model under each checkpoint name in ``chosen`` (one file, hard-linked), then
    ``resume.pt``; a model no name holds any more is gone with its last link."""
    checkpoints = out / "checkpoints"
    epoch_file = torch_save_atomic(model_state, checkpoints / ".epoch.pt")
    for name in chosen:
        link_atomic(epoch_file, checkpoints / f"{name}.pt")
    epoch_file.unlink()
    torch_save_atomic(resume, checkpoints / "resume.pt")


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


def parameter_groups(model: nn.Module, config: Config) -> list[dict]:
    """The trainable parameters as optimizer groups, each with the ``scale`` of ``train.lr`` it trains at:
    the trained visual encoders at ``train.visual_lr`` where it is set."""
    t, params = config.train, model.trainable_parameters()
    encoder_params = {id(p) for p in model.visual.encoders.parameters()}
    groups = [{"params": [p for p in params if id(p) not in encoder_params], "scale": 1.0},
              {"params": [p for p in params if id(p) in encoder_params], "scale": t.visual_lr / t.lr}]
    return [group for group in groups if group["params"]] if t.visual_lr else [{"params": params, "scale": 1.0}]


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


def epoch_batches(exp: Experiment, epoch: int) -> list[torch.Tensor]:
    """The shuffled training batches of ``epoch``: the same in a run, its resumption and any diagnostic."""
    t = exp.config.train
    return list(exp.splits["train"].batches(t.batch_size, torch.Generator().manual_seed(t.seed * 1000 + epoch)))


def training_loss(exp: Experiment, idx: torch.Tensor) -> tuple[VQAOutput, torch.Tensor, torch.Tensor]:
    """The head's output, the one-hot targets and the training loss on the training records ``idx``."""
    split, model = exp.splits["train"], exp.model
    targets = one_hot(split.labels[idx], model.num_answers)  # [B, A]
    output = forward(exp, split, idx)
    return output, targets, model.loss(output, targets, split.is_open[idx])


def train_one_epoch(exp: Experiment, optimizer: torch.optim.Optimizer, epoch: int) -> dict[str, float]:
    """One pass over the shuffled training split; stops the run on a non-finite loss."""
    t, model = exp.config.train, exp.model
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    steps = progress(epoch_batches(exp, epoch), t.progress, desc=f"epoch {epoch}", leave=False)
    for step, idx in enumerate(steps):
        output, targets, loss = training_loss(exp, idx)
        if not torch.isfinite(loss):
            raise UserError(f"loss is {loss.item()} at epoch {epoch} step {step}: run stopped; "
                            "the last good epoch is kept in checkpoints/")
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
    check_run_dir(out, config, args.overwrite)
    created = not out.exists()
    try:
        return train(config, out, stop_after=args.stop_after)
    except BaseException:
        if created and not (out / "checkpoints" / "last.pt").exists():  # nothing to resume: leave nothing
            shutil.rmtree(out, ignore_errors=True)
        raise


def train(config: Config, out: Path, stop_after: int | None = None) -> int:
    """Train (or resume, or extend) the run in ``out``, then evaluate it under the sound protocol.

    ``stop_after``: train no further than that many epochs of the ``train.epochs`` schedule this time.
    """
    state = read_resume_state(out)
    where = str(out / "checkpoints" / "last.pt")
    t = config.train
    end = t.epochs if stop_after is None else min(stop_after, t.epochs)
    if state is not None:
        check_resumed_data(state, config, where)
        done = state["epoch"] + 1
        if done > t.epochs:
            raise UserError(f"{out} has trained {done} epochs already; train.epochs={t.epochs} asks for fewer")
        if done >= end:
            save_config(config, out / "config.yaml")
            print(f"{out}: already trained for {done} of {t.epochs} epochs; nothing to do"
                  + (f" before epoch {end}" if done < t.epochs else ""))
            return 0

    if t.threads:
        torch.set_num_threads(t.threads)
    if resolve_device(t.device).type == "cpu":
        reuse_freed_memory()
    torch.use_deterministic_algorithms(t.deterministic, warn_only=True)
    seed_everything(t.seed)
    exp = build_experiment(config, state, where=where)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")
    model = exp.model
    from_files = encoders_from_files(model, exp.encoder_settings)  # frozen weights the checkpoints need not repeat
    router = train_type_classifier(exp, out) if config.type_classifier.epochs > 0 else None
    optimizer = torch.optim.Adamax(parameter_groups(model, config), lr=lr_at(0, config))
    history: list[dict] = []
    selectors = {name: EpochSelector(protocol) for name, protocol in kept_checkpoints().items()}
    start = 0
    torch.manual_seed(t.seed + 1)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        history, start = state["history"], state["epoch"] + 1
        for name, best in state["best"].items():
            selectors[name].best = best
        print(f"resuming {out} after epoch {state['epoch']}")
    n_params = sum(p.numel() for p in model.trainable_parameters())
    print(f"{config.model.name} on {exp.ds.name}: {len(exp.splits['train'])} train / {len(exp.splits['val'])} val / "
          f"{len(exp.splits['test'])} test QA, {len(exp.answers)} answers, {n_params / 1e6:.2f} M trainable parameters")

    for epoch in range(start, end):
        began = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch, config) * group.get("scale", 1.0)
        row = {"epoch": epoch, "lr": lr_at(epoch, config), **train_one_epoch(exp, optimizer, epoch)}
        row["train_seconds"] = round(time.perf_counter() - began, 2)
        row.update(evaluate_epoch(exp, router))
        row["seconds"] = round(time.perf_counter() - began, 2)
        history.append(row)
        chosen = [name for name, selector in selectors.items() if selector.update(row)]
        model_state = {"format": FORMAT_VERSION, "model": checkpoint_state(model, from_files), "epoch": epoch,
                       "encoders_from_files": from_files, "config": config.to_dict(), "answers": exp.answers,
                       "data_digests": exp.data_digests}
        save_epoch(out, model_state, chosen, {
            "format": FORMAT_VERSION, "epoch": epoch, "optimizer": optimizer.state_dict(),
            "rng": torch.get_rng_state(), "history": history,
            "best": {name: selector.best for name, selector in selectors.items()}})
        write_metrics(history, out)
        print(f"epoch {epoch}: loss {row['train_loss']:.4f} train {row['train_acc']:.2f} "
              f"val {row.get('val_overall', '- (no split)')} test {row['test_overall']} ({row['seconds']:.1f} s)")

    from medvqa.evaluate import evaluate_run

    evaluate_run(out, "sound", device=t.device)
    return 0
