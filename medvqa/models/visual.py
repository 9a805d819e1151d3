"""The visual-encoder interface, its registry, and an on-disk feature cache for frozen encoders.

An encoder maps images ``[B, C, H, W]`` (prepared as its ``input_spec`` says) to ``[B, output_dim]``.
MAML, CDAE, CLIP towers and a user's own encoder implement it; ``@register_encoder`` makes one
buildable by name from a config.
"""
from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from medvqa.models.registry import Registry
from infra.files import torch_save_atomic


@dataclass(frozen=True)
class InputSpec:
    """How images reach an encoder: the prepared cache (``key``), channels and normalisation."""

    key: str  # prepared image cache: "gray84", "gray128", "rgb224", ... (gray<N> or rgb<N>)
    size: int
    channels: int
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)


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

    def identity(self) -> str:
        """A digest of the encoder's name, input spec and weights: the feature-cache key."""
        digest = hashlib.sha1(f"{self.name}{self.input_spec}".encode())
        for key, tensor in sorted(self.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return f"{self.name}-{digest.hexdigest()[:16]}"


ENCODERS: Registry[VisualEncoder] = Registry("visual encoder")
register_encoder = ENCODERS.register  # decorator on a builder ``fn(**kwargs) -> VisualEncoder``
list_encoders = ENCODERS.names


def create_encoder(name: str, **kwargs) -> VisualEncoder:
    encoder = ENCODERS.create(name, **kwargs)
    encoder.name = name
    return encoder


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


class FeatureCache:
    """Encodings of a frozen encoder stored on disk, keyed by (encoder identity, images, image id).

    One file per encoder identity and image-cache digest, ``<root>/<identity>-<images>.pt`` =
    {"ids": [...], "features": [N, D]}: the same image ids resized another way are other images.
    Missing images are encoded once and the file is rewritten atomically.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, identity: str) -> Path:
        return self.root / f"{identity}.pt"

    def load(self, identity: str) -> dict[str, Tensor]:
        path = self.path(identity)
        if not path.exists():
            return {}
        stored = torch.load(path, map_location="cpu", weights_only=True)
        return dict(zip(stored["ids"], stored["features"]))

    def features(self, encoder: VisualEncoder, image_ids: Sequence[str],
                 load_images: Callable[[list[str]], Tensor], images_digest: str, batch_size: int = 64) -> Tensor:
        """``[len(image_ids), D]`` encodings; images not cached yet are loaded, encoded and stored."""
        identity = f"{encoder.identity()}-{images_digest}"
        table = self.load(identity)
        missing = [i for i in dict.fromkeys(image_ids) if i not in table]
        if missing:
            encoder.eval()
            device = encoder_device(encoder)
            with torch.no_grad():
                for start in range(0, len(missing), batch_size):
                    chunk = missing[start:start + batch_size]
                    codes = encoder.encode(load_images(chunk).to(device))
                    table.update(zip(chunk, codes.float().cpu()))
            self._save(identity, table)
        return torch.stack([table[i] for i in image_ids])

    def _save(self, identity: str, table: dict[str, Tensor]) -> None:
        torch_save_atomic({"ids": list(table), "features": torch.stack(list(table.values()))}, self.path(identity))


@dataclass
class VisualOutput:
    """The visual input of a VQA head."""

    v: Tensor  # [B, 1, v_dim]: one global vector per image
    aux_loss: Tensor | None  # summed auxiliary losses of the trainable branches (None without any)


class VisualFrontEnd(nn.Module):
    """Several encoders, each optionally projected, concatenated into one vector per image.

    ``forward`` takes, per encoder name, either images (the encoder runs) or cached encodings
    (a frozen encoder's features), so the same head serves fine-tuned and frozen-branch training.
    """

    def __init__(self, encoders: dict[str, VisualEncoder]) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
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
