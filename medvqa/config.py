"""Experiment configs: YAML files validated into dataclasses, with dotted ``key=value`` overrides.

An unknown key, a value of the wrong type or a malformed override is a one-line ``UserError`` that
names the key and the file.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from data_prep.prepare import ENCODER_WEIGHTS
from infra.config import apply_override, build, read_config_mapping, read_yaml_mapping
from infra.errors import UserError
from infra.files import write_text_atomic
from infra.plugins import import_plugins, resolve_plugins
from infra.runs import without
from infra.tf32 import DEFAULT_TF32, TF32_MODES
from medvqa.models import ENCODERS, HEADS, list_heads
from medvqa.models.visual import PREPARED_WEIGHTS, frozen_encoders

# Settings that say where and how fast a run goes, not what it learns: changing them between the
# sessions of one run (resuming on another machine, another device) is not a different run. Where
# the data lives is one of them: checkpoints record digests of the data's content instead.
RUNTIME_KEYS = {"data": ("root",), "train": ("threads", "device", "eval_batch_size", "feature_cache", "progress")}
# Settings added after runs were archived, with the value that trains what those runs trained: at
# that value a run's identity leaves them out, so earlier runs and grid cells still match their configs.
ADDED_KEYS = {"train": {"bf16_visual": True, "tf32": "cudnn"}}
CHOICES = {"train.tf32": tuple(TF32_MODES)}


@dataclass
class DataConfig:
    root: str = "data/vqa_rad"  # directory written by `medvqa prepare`
    train_splits: list[str] = field(default_factory=lambda: ["train"])  # add "val" to train on all of train
    answer_vocab: str = "train"  # "train" | "train+val" | "train+test" (published SLAKE runs: train+test)
    closed_by: str = "answer_type"  # closed/open from the stripped type; "raw-type": the published comparison
    tfidf: str = "published"  # tf-idf weighting of the second embedding: "published" | "corrected"


@dataclass
class ModelConfig:
    name: str = "mevf_ban"  # a registered VQA head: mevf_ban, mevf_san, qcr or a user's own
    visual: list[str] = field(default_factory=lambda: ["maml", "cdae"])  # registered visual encoders, in order
    freeze_visual: bool | list[str] = False  # true: every encoder, or the names of some; frozen encoders'
    # features are computed once and cached on disk (PubMedCLIP: [clip], the CDAE fine-tuned)
    head: dict[str, Any] = field(default_factory=dict)  # the head's own settings; omitted ones take its defaults
    encoders: dict[str, dict[str, Any]] = field(default_factory=dict)  # per encoder of ``visual``, its settings


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 32
    lr: float = 0.005  # Adamax
    visual_lr: float = 0.0  # learning rate of the trained visual encoders, on the same schedule; 0: train.lr
    warmup: list[float] = field(default_factory=lambda: [0.5, 1.0, 1.5, 2.0])  # lr multipliers, first epochs
    decay_epochs: list[int] = field(default_factory=lambda: [10, 12, 14, 16, 18])  # lr *= decay_rate at each
    decay_rate: float = 0.75
    clip_norm: float = 0.25
    seed: int = 1204
    deterministic: bool = True
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    bf16: bool = False  # bfloat16 autocast for the forward pass
    bf16_visual: bool = True  # under bf16 the visual encoders and their own losses too; false: float32
    channels_last: bool = True
    tf32: str = DEFAULT_TF32  # CUDA: "cudnn" (convolutions and RNNs in TF32, PyTorch's default), "all", "ieee" (none)
    device: str = "cpu"  # "cpu", "cuda", "cuda:N", or "auto" (cuda when available)
    eval_batch_size: int = 256
    feature_cache: str = ""  # frozen-encoder features; "" = <data.root>/feature_cache
    progress: bool = True


@dataclass
class TypeClassifierConfig:
    epochs: int = 0  # 0: no question-type classifier (heads routed by type need one at evaluation)
    hidden_dim: int = 1024  # its GRU (the published classifier: 1024)
    lr: float = 1e-4  # Adam
    batch_size: int = 64


@dataclass
class Config:
    plugins: list[str] = field(default_factory=list)  # modules or .py files that register heads, encoders, ...
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    type_classifier: TypeClassifierConfig = field(default_factory=TypeClassifierConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_identity(data: dict[str, Any]) -> dict[str, Any]:
    """A config mapping reduced to what the run learns: two configs equal after this train the same run.

    ``RUNTIME_KEYS`` are dropped, so are ``ADDED_KEYS`` at their earlier behaviour's value, and
    ``model.freeze_visual`` is spelled one way, as the sorted names of the encoders it freezes (``true``
    and a list naming every visual encoder are the same run).
    """
    identity = without(data, RUNTIME_KEYS)
    for section, defaults in ADDED_KEYS.items():
        if isinstance(identity.get(section), dict):
            identity[section] = {k: v for k, v in identity[section].items() if k not in defaults or v != defaults[k]}
    model = identity.get("model")
    if isinstance(model, dict):
        try:
            frozen = frozen_encoders(model.get("freeze_visual", False), model.get("visual", ModelConfig().visual))
        except (TypeError, ValueError):
            return identity  # refused, with its reason, when the model is built
        identity["model"] = {**model, "freeze_visual": sorted(frozen)}
    return identity


LEGACY_HEAD_KEYS = ("rnn", "hidden_dim", "glimpses", "tfidf", "dropout", "loss_reduction")
LEGACY_ENCODER_KEYS = {"weights": None, "reconstruction_weight": "cdae"}  # flat key -> the encoder it set


def upgrade_run_config(data: dict[str, Any]) -> dict[str, Any]:
    """A run config saved before heads and encoders owned their settings (``model.rnn``,
    ``model.weights.maml``, ...), in today's layout; a current one is returned as it is.

    Saved run configs list every setting, so the upgraded config trains exactly the same run: run
    directories and archived results of earlier versions resume, evaluate and compare as before. A
    weights path to the published MEVF file of its encoder (``.../pretrained_maml.weights``) becomes
    ``prepared``, the spelling of today's configs for the same file, which ``medvqa prepare`` carries.
    """
    model = data.get("model")
    if not isinstance(model, dict) or not set(model) & {*LEGACY_HEAD_KEYS, *LEGACY_ENCODER_KEYS}:
        return data
    model = dict(model)
    visual = list(model.get("visual") or [])
    encoders: dict[str, dict[str, Any]] = {name: {} for name in visual}
    for name, path in (model.pop("weights", None) or {}).items():
        if name in encoders:
            published = path and Path(path).name == ENCODER_WEIGHTS.get(name)
            encoders[name]["weights"] = PREPARED_WEIGHTS if published else path or ""
    reconstruction_weight = model.pop("reconstruction_weight", None)
    if reconstruction_weight is not None and "cdae" in encoders:
        encoders["cdae"]["reconstruction_weight"] = reconstruction_weight
    model["head"] = {key: model.pop(key) for key in LEGACY_HEAD_KEYS if key in model}
    model["encoders"] = {name: settings for name, settings in encoders.items() if settings}
    return {**data, "model": model}


def _refuse_flat_model_keys(data: dict[str, Any], where: str) -> None:
    """A config written for the flat ``model`` section gets the new spelling of its first such key."""
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    for key in model:
        if key in LEGACY_HEAD_KEYS:
            raise UserError(f"{where}: model.{key} is a setting of the head: write it under model.head "
                            f"(model.head.{key})")
        if key in LEGACY_ENCODER_KEYS:
            example = LEGACY_ENCODER_KEYS[key] or "maml"
            raise UserError(f"{where}: model.{key} is a setting of each visual encoder: write it under "
                            f"model.encoders (model.encoders.{example}.{key})")


def resolve_model(config: Config, where: str) -> Config:
    """Validate ``model.head`` and ``model.encoders`` against the settings of the registered head and
    encoders, and spell every setting out (omitted ones take the head's or encoder's own defaults)."""
    m = config.model
    if m.name not in list_heads():
        raise UserError(f"{where}: model.name {m.name!r} is not a VQA head; choose from: {', '.join(list_heads())}")
    try:
        frozen_encoders(m.freeze_visual, m.visual)
    except ValueError as error:
        raise UserError(f"{where}: model.{error}") from None
    strays = [name for name in m.encoders if name not in m.visual]
    if strays:
        raise UserError(f"{where}: model.encoders.{strays[0]} sets an encoder the model does not use "
                        f"(model.visual: {', '.join(m.visual)})")
    m.head = asdict(HEADS.settings(m.name, m.head, where, "model.head"))
    m.encoders = {name: asdict(ENCODERS.settings(name, m.encoders.get(name), where, f"model.encoders.{name}"))
                  for name in m.visual}
    return config


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (``None``: defaults; a ``base:`` file first), apply overrides, validate into
    ``Config`` with the head's and encoders' own settings spelled out."""
    data = read_config_mapping(path) if path is not None else {}
    where = str(path) if path is not None else "config"
    for override in overrides:
        apply_override(data, override)
    where = f"{where} (with overrides)" if overrides else where
    _refuse_flat_model_keys(data, where)
    config = build(Config, data, where, choices=CHOICES)
    config.plugins = resolve_plugins(config.plugins, Path(path).parent if path is not None else None)
    import_plugins(config.plugins, f"{where}: plugins")
    return resolve_model(config, where)


def read_run_config(run_dir: str | Path) -> Config:
    """The resolved config saved in a run directory (upgraded from an earlier layout where needed)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run directory (no config.yaml)")
    config = build(Config, upgrade_run_config(read_yaml_mapping(path, allow_empty=False)), str(path),
                   choices=CHOICES)
    import_plugins(config.plugins, f"{path}: plugins")
    return resolve_model(config, str(path))


def save_config(config: Config, path: str | Path) -> None:
    """Write ``config`` as YAML atomically (a temporary file renamed over ``path``)."""
    write_text_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
