"""Contrastive fine-tuning of CLIP on image-caption pairs: one process or torchrun (DDP), resumable.

Reads top to bottom: run directory, model, data, optimizer and schedule, resume, then per epoch
``train_one_epoch``, ``evaluate_pairs``, log, checkpoint. The run directory holds ``config.yaml``,
``metrics.csv``/``metrics.json`` (one row per epoch; epoch 0 is the model before training),
``checkpoints/last.pt`` and ``best.pt`` (best validation mean R@K), ``data_summary.json`` and ``results.json``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from infra.errors import UserError
from infra.files import torch_save_atomic, write_text_atomic
from infra.progress import progress
from infra.runs import check_continuation
from pubmedclip.checkpoints import RUN_FORMAT, load_clip
from pubmedclip.config import FinetuneConfig, config_dict
from pubmedclip.data import (
    DataSummary,
    ImageDataset,
    Pair,
    ShardedBatchSampler,
    ShardStream,
    collate,
    count_shard_pairs,
    drop_missing,
    find_shards,
    read_pairs,
    roco_retrieval_subset,
    tokenize_captions,
)
from pubmedclip.distributed import DistInfo, barrier, broadcast_object, init_distributed
from pubmedclip.embed import autocast, embed_batches
from pubmedclip.loss import clip_loss
from pubmedclip.metrics import retrieval_metrics
from pubmedclip.models import LoadedClip, image_transform


def lr_multiplier(step: int, total: int, warmup: int, schedule: str) -> float:
    """Linear warm-up over ``warmup`` steps, then constant or cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


RUNTIME_KEYS = {"train": ("device", "eval_batch_size"), "data": ("num_workers",)}  # see infra.runs


def prepare_run_dir(run_dir: Path, cfg: FinetuneConfig, overwrite: bool, dist: DistInfo) -> bool:
    """Create or re-open a run directory; True when it already holds a finished run of this config.

    A run continues on another device or with other runtime settings, and extends to more epochs
    under the constant schedule (the cosine schedule depends on the total, so there it is refused).
    """
    stored_path = run_dir / "config.yaml"
    if stored_path.is_file():
        stored = yaml.safe_load(stored_path.read_text(encoding="utf-8"))
        refused = "its cosine learning-rate schedule depends on the total" if cfg.train.schedule == "cosine" else None
        try:
            check_continuation(str(run_dir), stored, config_dict(cfg), RUNTIME_KEYS, refused)
        except UserError:
            if not overwrite:
                raise
            barrier()
            if dist.is_main:
                shutil.rmtree(run_dir)
        else:
            if (run_dir / "results.json").is_file() and stored["train"]["epochs"] == cfg.train.epochs:
                return True
    elif run_dir.is_dir() and any(run_dir.iterdir()) and not overwrite:
        raise UserError(f"{run_dir} exists and is not a run directory; use another output directory or --overwrite")
    barrier()
    if dist.is_main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_text_atomic(stored_path, yaml.safe_dump(config_dict(cfg), sort_keys=False))
    barrier()
    return False


def load_pairs(spec: str, image_root: str | None, summary: DataSummary, preset: str | None = None) -> list[Pair]:
    """Read pairs, apply a protocol preset, drop (and count) missing images; none left is an error."""
    pairs = read_pairs(spec, image_root)
    if preset == "roco2000":
        pairs = roco_retrieval_subset(pairs)
    pairs = drop_missing(pairs, summary)
    if not pairs:
        raise UserError(f"no usable image-caption pairs in {spec} (missing images: {summary.missing_images})")
    return pairs


def build_model(cfg: FinetuneConfig, device: torch.device) -> LoadedClip:
    """The starting model (pretrained or random) with the requested towers frozen, on ``device``."""
    loaded = load_clip(cfg.model.pretrained if cfg.model.load_pretrained else None, cfg.model.arch)
    if cfg.model.freeze_vision:
        loaded.model.lock_image_tower(freeze_bn_stats=True)
    if cfg.model.freeze_text:
        loaded.model.lock_text_tower()
    loaded.model.to(device)
    return loaded


def train_one_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    cfg: FinetuneConfig,
    dist: DistInfo,
    desc: str,
) -> dict[str, float]:
    """One pass over the training data; returns mean loss, pairs/s and the number of undecodable images."""
    model.train()
    accum, device = cfg.train.grad_accum, dist.device
    params = [p for p in model.parameters() if p.requires_grad]
    total_loss, steps, pairs, skipped, start = 0.0, 0, 0, 0, time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    for micro, batch in enumerate(progress(loader, dist.is_main, desc=desc, leave=False)):
        skipped += batch.skipped
        if batch.tokens is None and dist.world == 1:
            continue  # every image of this batch failed to decode
        images, tokens = batch.images.to(device), batch.tokens.to(device)  # [b, 3, S, S], [b, L]
        update = (micro + 1) % accum == 0 or micro + 1 == len(loader)
        sync = contextlib.nullcontext() if update or dist.world == 1 else model.no_sync()
        with sync:
            with autocast(device, cfg.train.precision):
                image_features, text_features, scale = model(images, tokens)[:3]  # [b, D], [b, D], []
            loss = clip_loss(image_features, text_features, scale)
            scaler.scale(loss / accum).backward()
        total_loss, steps, pairs = total_loss + loss.item(), steps + 1, pairs + images.shape[0]
        if update:
            if cfg.train.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            with torch.no_grad():
                unwrap(model).logit_scale.clamp_(0, math.log(100))
    seconds = time.perf_counter() - start
    return {
        "train_loss": total_loss / max(1, steps),
        "pairs_per_s": pairs * dist.world / max(seconds, 1e-9),
        "skipped_images": float(skipped),
        "lr": optimizer.param_groups[0]["lr"],
    }


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP wrapper."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def evaluate_pairs(
    loaded: LoadedClip,
    pairs: list[Pair],
    tokens: torch.Tensor,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
    num_workers: int = 0,
) -> dict[str, float]:
    """Retrieval metrics of a model on row-aligned pairs (undecodable images dropped with their captions)."""
    dataset = ImageDataset([p.image for p in pairs], image_transform(loaded.preprocess), tokens)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    image_emb, text_emb, index, skipped = embed_batches(loaded.model, loader, device, precision, texts=True)
    metrics = retrieval_metrics(image_emb, text_emb, [pairs[i].caption for i in index.tolist()])
    return {**metrics, "skipped_images": float(skipped)}


def _write_metrics(run_dir: Path, history: list[dict[str, float]]) -> None:
    write_text_atomic(run_dir / "metrics.json", json.dumps(history, indent=1))
    columns = list(dict.fromkeys(k for row in history for k in row))
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(run_dir / "metrics.csv", table.getvalue())


@dataclass
class Session:
    """Everything a training run works with, built from the config by ``setup``."""

    loaded: LoadedClip
    model: torch.nn.Module  # loaded.model, wrapped in DDP when distributed
    loader: DataLoader
    sampler: ShardedBatchSampler | ShardStream  # set_epoch(epoch) before each epoch
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    val_pairs: list[Pair]
    val_tokens: torch.Tensor
    summary: DataSummary
    val_summary: DataSummary


def setup(cfg: FinetuneConfig, dist: DistInfo) -> Session:
    """Model (seeded), training loader, validation pairs, optimizer, warm-up + cosine schedule, loss scaler."""
    torch.manual_seed(cfg.train.seed)
    loaded = build_model(cfg, dist.device)
    model: torch.nn.Module = loaded.model
    if dist.world > 1:
        model = DistributedDataParallel(model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)

    summary, val_summary = DataSummary(), DataSummary()
    val_root = cfg.data.val_image_root or cfg.data.image_root
    val_pairs = load_pairs(cfg.data.val, val_root, val_summary, cfg.data.val_preset)
    val_tokens = tokenize_captions(loaded.tokenizer, [p.caption for p in val_pairs], val_summary)
    transform = image_transform(loaded.preprocess, True, tuple(cfg.data.crop_scale), cfg.data.hflip)
    draft_size = int(loaded.preprocess["size"])
    shards = find_shards(cfg.data.train)
    if shards:  # streamed: neither pairs nor tokens are held in memory
        summary.pairs = count_shard_pairs(shards)
        if summary.pairs < cfg.train.batch_size:
            raise UserError(f"{summary.pairs} training pairs are fewer than one batch ({cfg.train.batch_size})")
        if cfg.train.batch_size % dist.world:
            raise UserError(f"batch size {cfg.train.batch_size} is not divisible by the {dist.world} processes")
        sampler = ShardStream(shards, summary.pairs, transform, loaded.tokenizer, cfg.train.batch_size // dist.world,
                              dist.rank, dist.world, cfg.train.seed, cfg.data.shuffle_buffer, draft_size)
        loader = DataLoader(sampler, batch_size=None, num_workers=cfg.data.num_workers)
    else:
        train_pairs = load_pairs(cfg.data.train, cfg.data.image_root, summary)
        train_tokens = tokenize_captions(loaded.tokenizer, [p.caption for p in train_pairs], summary)
        if len(train_pairs) < cfg.train.batch_size:
            raise UserError(f"{len(train_pairs)} training pairs are fewer than one batch ({cfg.train.batch_size})")
        train_set = ImageDataset([p.image for p in train_pairs], transform, train_tokens, draft_size=draft_size)
        sampler = ShardedBatchSampler(len(train_set), cfg.train.batch_size, dist.rank, dist.world, cfg.train.seed)
        loader = DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.data.num_workers, collate_fn=collate)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer_cls = torch.optim.AdamW if cfg.train.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_cls(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    total_steps = cfg.train.epochs * math.ceil(len(loader) / cfg.train.grad_accum)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, total_steps, cfg.train.warmup_steps, cfg.train.schedule)
    )
    scaler = torch.amp.GradScaler(dist.device.type, enabled=cfg.train.precision == "fp16")
    return Session(
        loaded, model, loader, sampler, optimizer, scheduler, scaler, val_pairs, val_tokens, summary, val_summary
    )


def finetune(
    cfg: FinetuneConfig, run_dir: str | Path, overwrite: bool = False, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Fine-tune (or continue fine-tuning) into ``run_dir``; returns the contents of ``results.json``."""
    run_dir = Path(run_dir)
    dist = init_distributed(cfg.train.device)
    log = log if dist.is_main else (lambda message: None)
    if prepare_run_dir(run_dir, cfg, overwrite, dist):
        log(f"{run_dir} already holds a finished run of this config")
        return json.loads((run_dir / "results.json").read_text())
    s = setup(cfg, dist)
    log(
        f"data: {s.summary.pairs} train / {s.val_summary.pairs} val pairs; missing images "
        f"{s.summary.missing_images} / {s.val_summary.missing_images}; captions cut at {s.val_tokens.shape[1]} "
        f"tokens: {s.summary.truncated_captions} / {s.val_summary.truncated_captions}"
    )

    def evaluate() -> dict[str, float]:
        metrics = evaluate_pairs(
            s.loaded,
            s.val_pairs,
            s.val_tokens,
            cfg.train.eval_batch_size,
            dist.device,
            cfg.train.precision,
            cfg.data.num_workers,
        )
        return {f"val_{k}": v for k, v in metrics.items()}

    last_path, best_path = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "best.pt"
    if last_path.is_file():
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        s.loaded.model.load_state_dict(state["state_dict"])
        s.optimizer.load_state_dict(state["optimizer"])
        s.scheduler.load_state_dict(state["scheduler"])
        s.scaler.load_state_dict(state["scaler"])
        start_epoch, history, best = state["epoch"], state["history"], state["best"]
        log(f"resuming {run_dir} after epoch {start_epoch}")
    else:
        start_epoch, history = 0, [{"epoch": 0, **(evaluate() if dist.is_main else {})}]
        best = {"epoch": 0, "val_mean_recall": history[0].get("val_mean_recall", 0.0)}
        log(f"epoch 0 (before training): val mean R@K {best['val_mean_recall']:.2f}")

    def checkpoint(epoch: int, with_optimizer: bool) -> dict[str, Any]:
        state = {
            "format": RUN_FORMAT,
            "arch": s.loaded.arch,
            "model_cfg": s.loaded.model_cfg,
            "preprocess": s.loaded.preprocess,
            "state_dict": s.loaded.model.state_dict(),
            "epoch": epoch,
            "config": config_dict(cfg),
        }
        if with_optimizer:
            state.update(
                optimizer=s.optimizer.state_dict(),
                scheduler=s.scheduler.state_dict(),
                scaler=s.scaler.state_dict(),
                history=history,
                best=best,
            )
        return state

    for epoch in range(start_epoch + 1, cfg.train.epochs + 1):
        torch.manual_seed(cfg.train.seed * 1000 + epoch * 10 + dist.rank)  # augmentation and worker seeds
        s.sampler.set_epoch(epoch)
        row = {
            "epoch": epoch,
            **train_one_epoch(
                s.model, s.loader, s.optimizer, s.scheduler, s.scaler, cfg, dist, f"epoch {epoch}/{cfg.train.epochs}"
            ),
        }
        if dist.is_main:
            row.update(evaluate())
            history.append(row)
            if row["val_mean_recall"] > best["val_mean_recall"] or not best_path.is_file():
                best = {"epoch": epoch, "val_mean_recall": row["val_mean_recall"]}
                torch_save_atomic(checkpoint(epoch, with_optimizer=False), best_path)
            torch_save_atomic(checkpoint(epoch, with_optimizer=True), last_path)
            _write_metrics(run_dir, history)
            log(
                f"epoch {epoch}: loss {row['train_loss']:.4f}, {row['pairs_per_s']:.1f} pairs/s, val R@1 "
                f"i2t {row['val_i2t_R@1']:.1f} t2i {row['val_t2i_R@1']:.1f}, mean R@K {row['val_mean_recall']:.2f}"
            )
        barrier()

    s.summary.corrupt_images = int(max((r.get("skipped_images", 0) for r in history[1:]), default=0))
    s.val_summary.corrupt_images = int(history[-1].get("val_skipped_images", 0))
    results = {
        "best_epoch": best["epoch"],
        "best": next(r for r in history if r["epoch"] == best["epoch"]),
        "untrained": history[0],
        "final": history[-1],
        "data": {"train": asdict(s.summary), "val": asdict(s.val_summary)},
    }
    if dist.is_main:
        write_text_atomic(run_dir / "data_summary.json", json.dumps(results["data"], indent=1))
        write_text_atomic(run_dir / "results.json", json.dumps(results, indent=1))
    return broadcast_object(results)
