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

from infra.errors import UserError
from infra.files import write_text_atomic
from infra.config import build, load_dataclass, read_yaml_mapping

PUBLISHED_RAD = "../shared/data/vqa_rad/data_RAD"
# Settings that say where and how fast a run goes, not what it learns: changing them between the
# sessions of one run (resuming on another machine, another device) is not a different run. Where
# the data lives is one of them: checkpoints record digests of the data's content instead.
RUNTIME_KEYS = {"data": ("root",), "train": ("threads", "device", "eval_batch_size", "feature_cache", "progress")}


@dataclass
class DataConfig:
    root: str = "data/vqa_rad"  # directory written by `medvqa prepare`
    train_splits: list[str] = field(default_factory=lambda: ["train"])  # add "val" to train on all of train
    answer_vocab: str = "train"  # "train" | "train+val" | "train+test" (published SLAKE runs: train+test)
    closed_by: str = "answer_type"  # closed/open from the stripped type; "raw-type": the published comparison
    tfidf: str = "published"  # tf-idf weighting of the second embedding: "published" | "corrected"


@dataclass
class ModelConfig:
    name: str = "mevf_ban"  # a registered model: mevf_ban, mevf_san, qcr
    visual: list[str] = field(default_factory=lambda: ["maml", "cdae"])  # registered visual encoders
    weights: dict[str, str] = field(default_factory=lambda: {
        "maml": f"{PUBLISHED_RAD}/pretrained_maml.weights", "cdae": f"{PUBLISHED_RAD}/pretrained_ae.pth"})
    freeze_visual: bool | list[str] = False  # true: every encoder, or the names of some; frozen encoders'
    # features are computed once and cached on disk (PubMedCLIP: [clip], the CDAE fine-tuned)
    rnn: str = "LSTM"
    hidden_dim: int = 1024
    glimpses: int = 2
    tfidf: bool = True
    dropout: float = 0.5
    reconstruction_weight: float = 0.001  # CDAE reconstruction MSE weight
    loss_reduction: str = "instance"  # BCE "instance" (sum over answers / batch) or "mean"


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 32
    lr: float = 0.005  # Adamax
    warmup: list[float] = field(default_factory=lambda: [0.5, 1.0, 1.5, 2.0])  # lr multipliers, first epochs
    decay_epochs: list[int] = field(default_factory=lambda: [10, 12, 14, 16, 18])  # lr *= decay_rate at each
    decay_rate: float = 0.75
    clip_norm: float = 0.25
    seed: int = 1204
    deterministic: bool = True
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    bf16: bool = False  # bfloat16 autocast for the forward pass
    channels_last: bool = True
    device: str = "cpu"  # "cpu", "cuda", "cuda:N", or "auto" (cuda when available)
    eval_batch_size: int = 256
    feature_cache: str = ""  # frozen-encoder features; "" = <data.root>/feature_cache
    progress: bool = True


@dataclass
class TypeClassifierConfig:
    epochs: int = 0  # 0: no question-type classifier (QCR needs one to route at evaluation)
    lr: float = 1e-4  # Adam
    batch_size: int = 64


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    type_classifier: TypeClassifierConfig = field(default_factory=TypeClassifierConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def frozen_encoders(freeze: bool | list[str], names: Sequence[str]) -> list[str]:
    """The encoders ``model.freeze_visual`` freezes among ``names``: all (true), none (false) or those listed."""
    if isinstance(freeze, str):
        raise ValueError(f"freeze_visual {freeze!r}: give true, false or a list of encoder names, e.g. [{freeze}]")
    frozen = list(names) if freeze is True else list(freeze or ())
    unknown = [name for name in frozen if name not in names]
    if unknown:
        raise ValueError(f"freeze_visual names {unknown}, which are not visual encoders of this model "
                         f"({', '.join(names)})")
    return frozen


def run_identity(data: dict[str, Any]) -> dict[str, Any]:
    """A config mapping reduced to what the run learns: two configs equal after this train the same run.

    ``RUNTIME_KEYS`` are dropped, and ``model.freeze_visual`` is spelled one way, as the sorted names
    of the encoders it freezes (``true`` and a list naming every visual encoder are the same run).
    """
    identity = {section: {k: v for k, v in values.items() if k not in RUNTIME_KEYS.get(section, ())}
                if isinstance(values, dict) else values for section, values in data.items()}
    model = identity.get("model")
    if isinstance(model, dict):
        try:
            frozen = frozen_encoders(model.get("freeze_visual", False), model.get("visual", ModelConfig().visual))
        except (TypeError, ValueError):
            return identity  # refused, with its reason, when the model is built
        identity["model"] = {**model, "freeze_visual": sorted(frozen)}
    return identity


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a YAML config (``None``: defaults), apply overrides, validate into ``Config``."""
    return load_dataclass(Config, path, overrides)


def read_run_config(run_dir: str | Path) -> Config:
    """The resolved config saved in a run directory."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run directory (no config.yaml)")
    return build(Config, read_yaml_mapping(path, allow_empty=False), str(path))


def save_config(config: Config, path: str | Path) -> None:
    """Write ``config`` as YAML atomically (a temporary file renamed over ``path``)."""
    write_text_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
