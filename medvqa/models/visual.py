"""The visual-encoder interface, its registry, and the encodings of frozen encoders through the feature cache.

An encoder maps images ``[B, C, H, W]`` (prepared as its ``input_spec`` says) to ``[B, output_dim]``.
MAML, CDAE, CLIP towers and a user's own encoder implement it; ``@register_encoder`` makes one
buildable by name from a config.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from data_prep.input_spec import InputSpec
from infra.feature_cache import FeatureCache, encoder_description, encoder_identity
from infra.registry import Registry


class VisualEncoder(nn.Module):
    """Base class: ``encode(images) -> [B, output_dim]``.

    ``projection_dim``: the VQA head projects the encoding to this size with a trainable linear layer
    (CDAE's 16384-d code -> 64); ``None`` uses the encoding as it is.
    """

    name: str = ""
    input_spec: InputSpec
    output_dim: int
    projection_dim: int | None = None
    trainable: bool = True
    calibrate_norms: bool = False  # when frozen, first set BatchNorm statistics from the training images

    def encode(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def auxiliary_loss(self, images: Tensor, features: Tensor) -> Tensor | None:
        """Extra training loss from this branch (CDAE reconstruction); ``None`` when it has none."""
        return None

    def freeze(self) -> None:
        """Stop training this encoder: no gradients, evaluation-mode normalisation and dropout."""
        self.trainable = False
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VisualEncoder":
        return super().train(mode and self.trainable)

    def describe(self) -> dict[str, Any]:
        """What the encodings depend on besides the images (JSON): input spec and weights (sha256)."""
        return encoder_description(self.input_spec, self.state_dict())

    def identity(self) -> str:
        """``<name>-<digest>`` of the name and ``describe()``: the same weights and input, the same identity."""
        return encoder_identity(self.name, self.describe())


PREPARED_WEIGHTS = "prepared"  # an encoder's ``weights``: the copy the prepared data carries (``medvqa prepare``)
ENCODERS: Registry[VisualEncoder] = Registry("visual encoder")
register_encoder = ENCODERS.register  # decorator on a builder ``fn(settings) -> VisualEncoder``
list_encoders = ENCODERS.names


def create_encoder(name: str, settings: dict | Any | None = None, where: str = "config") -> VisualEncoder:
    """Build the encoder ``name`` from its settings (``model.encoders.<name>`` of a run config)."""
    encoder = ENCODERS.create(name, settings, where, key=f"model.encoders.{name}")
    encoder.name = name
    return encoder


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


def images_to_tensor(images: np.ndarray, spec: InputSpec) -> Tensor:
    """uint8 ``[N, H, W]`` or ``[N, H, W, 3]`` -> float32 ``[N, C, H, W]`` in [0, 1], then (x - mean) / std."""
    x = torch.from_numpy(np.array(images, dtype=np.float32)).div_(255.0)
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)  # [N, C, H, W]
    if x.size(1) != spec.channels:
        raise ValueError(f"images have {x.size(1)} channels, encoder input {spec.key!r} expects {spec.channels}")
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous()


def encoder_device(encoder: VisualEncoder) -> torch.device:
    """The device of the encoder's parameters or buffers (its inputs are moved there); CPU without any."""
    tensor = next(itertools.chain(encoder.parameters(), encoder.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


@torch.no_grad()
def calibrate_batchnorm(encoder: VisualEncoder, images: Tensor, batch_size: int = 64) -> None:
    """Set BatchNorm running statistics to the exact mean/variance over ``images`` (for a frozen encoder)."""
    norms = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
        m.train()
    device = encoder_device(encoder)
    for start in range(0, len(images), batch_size):
        encoder.encode(images[start:start + batch_size].to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
        m.eval()


def frozen_features(encoder: VisualEncoder, cache: FeatureCache, image_ids: Sequence[str],
                    load_images: Callable[[list[str]], Tensor], images_digest: str, batch_size: int = 64) -> Tensor:
    """``[len(image_ids), D]`` encodings of a frozen encoder, read from ``cache`` or computed and stored there.

    The cache table is that of the encoder's description plus ``images_digest`` (the same image ids resized
    another way are other images), with image ids as item keys; ``load_images(ids)`` gives ``[n, C, H, W]``.
    """
    def encode(missing: list[str]) -> dict[str, np.ndarray]:
        encoder.eval()
        device = encoder_device(encoder)
        codes = {}
        with torch.no_grad():
            for start in range(0, len(missing), batch_size):
                chunk = missing[start:start + batch_size]
                encoded = encoder.encode(load_images(chunk).to(device))  # [n, D]
                codes.update(zip(chunk, encoded.float().cpu().numpy()))
        return codes

    description = {**encoder.describe(), "images": images_digest, "items": "image id"}
    table = cache.vectors(encoder.name, description, image_ids, encode)
    return torch.from_numpy(np.stack([table[i] for i in image_ids]))  # [N, D]


@dataclass
class VisualOutput:
    """The visual input of a VQA head."""

    v: Tensor  # [B, 1, v_dim]: one global vector per image
    aux_loss: Tensor | None  # summed auxiliary losses of the trainable branches (None without any)


class VisualFrontEnd(nn.Module):
    """Several encoders, each optionally projected, concatenated into one vector per image.

    ``forward`` takes, per encoder name, either images (the encoder runs) or cached encodings
    (a frozen encoder's features), so the same head serves fine-tuned and frozen-branch training.
    ``float32_encoders``: the encoders and their auxiliary losses run in float32 under autocast.
    """

    def __init__(self, encoders: dict[str, VisualEncoder], float32_encoders: bool = False) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.float32_encoders = float32_encoders
        self.projections = nn.ModuleDict({
            name: nn.Linear(enc.output_dim, enc.projection_dim)
            for name, enc in encoders.items() if enc.projection_dim is not None
        })
        self.output_dim = sum(enc.projection_dim or enc.output_dim for enc in encoders.values())

    def forward(self, images: dict[str, Tensor] | None = None,
                features: dict[str, Tensor] | None = None) -> VisualOutput:
        images, features = images or {}, features or {}
        parts, aux = [], []
        for name, encoder in self.encoders.items():
            if name in features:
                code = features[name]  # [B, D_enc]
            elif encoder.input_spec.key in images:
                x = images[encoder.input_spec.key]
                with torch.autocast(x.device.type, enabled=False) if self.float32_encoders else nullcontext():
                    code = encoder.encode(x)  # [B, D_enc]
                    if encoder.trainable and self.training:
                        loss = encoder.auxiliary_loss(x, code)
                        if loss is not None:
                            aux.append(loss)
            else:
                raise KeyError(f"visual encoder {name!r} needs images {encoder.input_spec.key!r} or cached features")
            parts.append(self.projections[name](code) if name in self.projections else code)
        v = torch.cat(parts, dim=1).unsqueeze(1)  # [B, 1, v_dim]
        return VisualOutput(v, torch.stack(aux).sum() if aux else None)
