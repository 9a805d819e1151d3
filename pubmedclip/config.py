"""Fine-tuning configuration: YAML validated into dataclasses, with ``section.key=value`` overrides.

An unknown key, a wrong type or a value outside its choices is a one-line ``UserError`` naming the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pubmedclip.errors import UserError


@dataclass
class ModelConfig:
    arch: str | None = None  # architecture name; None = read it from the pretrained checkpoint
    load_pretrained: bool = True  # start from `pretrained` weights (False = random initialisation of `arch`)
    pretrained: str | None = None  # checkpoint in any supported format (OpenAI, PubMedCLIP, open_clip, HF, run)
    freeze_vision: bool = False  # keep the image tower fixed
    freeze_text: bool = False  # keep the text tower fixed


@dataclass
class DataConfig:
    train: str = ""  # ROCO folder (captions.txt), PubMedCLIP CSV, or generic CSV/JSONL of image + caption
    val: str = ""  # same formats; the split used for model selection
    image_root: str | None = None  # image folder when the caption file's default does not apply
    val_image_root: str | None = None
    val_preset: str | None = None  # "roco2000": captions >= 3 words, seed-42 shuffle, first 2,000
    num_workers: int = 1  # data-loading processes per training process
    crop_scale: list[float] = field(default_factory=lambda: [0.9, 1.0])  # RandomResizedCrop area range
    hflip: bool = False  # left/right flips change anatomy in radiology: off unless asked


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


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """``value`` as type ``hint`` or a UserError naming ``key``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        return _coerce(key, value, hint)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key {key}: expected a list, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if hint is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value)  # YAML reads 1e-5 (no dot) as a string
        except ValueError:
            pass
    if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise UserError(f"config key {key}: expected {hint.__name__}, got {value!r}")


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in known:
            raise UserError(f"config: unknown key '{name}' (known in this section: {', '.join(sorted(known))})")
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise UserError(f"config key {name}: expected a section (mapping), got {value!r}")
            kwargs[key] = _build(hints[key], value, f"{name}.")
        else:
            kwargs[key] = _coerce(name, value, hints[key])
            if name in CHOICES and kwargs[key] not in CHOICES[name]:
                raise UserError(f"config key {name}: {kwargs[key]!r} is not one of {CHOICES[name]}")
    return cls(**kwargs)


def apply_override(values: dict[str, Any], override: str) -> None:
    """Set ``a.b=value`` (value parsed as YAML) in a nested dict."""
    if "=" not in override:
        raise UserError(f"override {override!r} is not key=value")
    key, raw = override.split("=", 1)
    *sections, leaf = key.strip().split(".")
    node = values
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise UserError(f"override {override!r}: {section} is not a section")
    node[leaf] = yaml.safe_load(raw)


def load_config(path: str | Path | None, overrides: list[str] = ()) -> FinetuneConfig:
    """Read a YAML config, apply overrides, validate, and check the required keys."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file not found: {path}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
        if not isinstance(values, dict):
            raise UserError(f"{path}: expected a mapping of sections at the top level")
    for override in overrides:
        apply_override(values, override)
    cfg = _build(FinetuneConfig, values, "")
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
