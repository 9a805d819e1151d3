"""Fine-tuning configuration: YAML validated into dataclasses, with ``section.key=value`` overrides.

An unknown key, a wrong type or a value outside its choices is a one-line ``UserError`` naming the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.config import load_dataclass
from infra.errors import UserError


@dataclass
class ModelConfig:
    arch: str | None = None  # architecture name; None = read it from the pretrained checkpoint
    load_pretrained: bool = True  # start from `pretrained` weights (False = random initialisation of `arch`)
    pretrained: str | None = None  # checkpoint in any supported format (OpenAI, PubMedCLIP, open_clip, HF, run)
    freeze_vision: bool = False  # keep the image tower fixed
    freeze_text: bool = False  # keep the text tower fixed


@dataclass
class DataConfig:
    train: str = ""  # ROCO folder (captions.txt), PubMedCLIP CSV, generic CSV/JSONL of image + caption, or a
    # folder of WebDataset shards (000000.tar ...: `pubmedclip pmc-oa extract` output), streamed
    val: str = ""  # same formats; the split used for model selection
    image_root: str | None = None  # image folder when the caption file's default does not apply
    val_image_root: str | None = None
    val_preset: str | None = None  # "roco2000": captions >= 3 words, seed-42 shuffle, first 2,000
    num_workers: int = 1  # data-loading processes per training process
    crop_scale: list[float] = field(default_factory=lambda: [0.9, 1.0])  # RandomResizedCrop area range
    hflip: bool = False  # left/right flips change anatomy in radiology: off unless asked
    shuffle_buffer: int = 1000  # samples shuffled together when streaming shards


@dataclass
class TrainConfig:
    optimizer: str = "adam"  # adam (published, L2 weight decay) | adamw (decoupled)
    lr: float = 1e-5
    weight_decay: float = 5e-4
    warmup_steps: int = 0  # linear warm-up in optimizer steps
    schedule: str = "cosine"  # cosine | constant (after warm-up)
    epochs: int = 50
    batch_size: int = 64  # pairs per contrastive batch, summed over all processes
    grad_accum: int = 1  # micro-batches per optimizer step
    grad_clip: float | None = None  # max gradient norm
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 adds loss scaling)
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda
    eval_batch_size: int = 128


@dataclass
class FinetuneConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


CHOICES = {
    "train.optimizer": ("adam", "adamw"),
    "train.schedule": ("cosine", "constant"),
    "train.precision": ("fp32", "bf16", "fp16"),
    "train.device": ("auto", "cpu", "cuda"),
    "data.val_preset": (None, "roco2000"),
}


def load_config(path: str | Path | None, overrides: list[str] = ()) -> FinetuneConfig:
    """Read a YAML config, apply overrides, validate, and check the required keys."""
    cfg = load_dataclass(FinetuneConfig, path, overrides, CHOICES)
    for key in ("train", "val"):
        if not getattr(cfg.data, key):
            raise UserError(f"config key data.{key} is required")
    if cfg.model.load_pretrained and not cfg.model.pretrained:
        raise UserError("config key model.pretrained is required when model.load_pretrained is true")
    if not cfg.model.load_pretrained and not cfg.model.arch:
        raise UserError("config key model.arch is required when model.load_pretrained is false")
    return cfg


def config_dict(cfg: FinetuneConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
