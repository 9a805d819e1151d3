"""The MAML-pretrained four-layer CNN visual branch (84x84 grayscale -> 64-d)."""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data_prep.input_spec import InputSpec
from medvqa.models.visual import VisualEncoder, register_encoder

MAML_INPUT = InputSpec(key="gray84", size=84, channels=1)


class MAMLEncoder(VisualEncoder):
    """4 x [Conv 3x3 stride 2 pad 1, ReLU, BatchNorm]: 84 -> 42 -> 21 -> 11 -> 6, then the mean over the 36 positions.

    BatchNorm uses eps 1e-5 and PyTorch momentum 0.05 (running = 0.95 running + 0.05 batch), as the
    published code passes ``momentum=0.05`` to ``nn.BatchNorm2d``.
    """

    input_spec = MAML_INPUT
    calibrate_norms = True  # the published weights carry no BatchNorm statistics

    def __init__(self, channels: int = 64, eps: float = 1e-5, momentum: float = 0.05) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(1 if i == 0 else channels, channels, 3, 2, 1) for i in range(4))
        self.norms = nn.ModuleList(nn.BatchNorm2d(channels, eps=eps, momentum=momentum) for _ in range(4))
        self.output_dim = channels

    def encode(self, images: Tensor) -> Tensor:
        x = images  # [B, 1, 84, 84]
        for conv, norm in zip(self.convs, self.norms):
            x = norm(F.relu(conv(x), inplace=True))  # [B, 64, 42 | 21 | 11 | 6, ...]
        return x.mean(dim=(2, 3))  # [B, 64]

    def load_published(self, path: str | Path) -> None:
        """Load ``pretrained_maml.weights``: a pickle of conv1..conv4 in TensorFlow (3, 3, in, out) layout and b1..b4."""
        with open(path, "rb") as handle:
            weights = pickle.load(handle)
        expected = {f"conv{i}" for i in range(1, 5)} | {f"b{i}" for i in range(1, 5)}
        if set(weights) != expected:
            raise ValueError(f"{path}: keys {sorted(weights)}, expected {sorted(expected)}")
        with torch.no_grad():
            for i, conv in enumerate(self.convs, 1):
                kernel = np.transpose(weights[f"conv{i}"], (3, 2, 0, 1))  # HWIO -> OIHW
                if kernel.shape != tuple(conv.weight.shape):
                    raise ValueError(f"{path}: conv{i} has shape {kernel.shape}, model expects {tuple(conv.weight.shape)}")
                conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
                conv.bias.copy_(torch.from_numpy(weights[f"b{i}"]))


@dataclass
class MAMLSettings:
    weights: str = ""  # pretrained_maml.weights; "prepared": the copy in the prepared data; "": random init


@register_encoder("maml", settings=MAMLSettings)
def maml(settings: MAMLSettings) -> MAMLEncoder:
    """The MAML CNN, from the published weights when ``settings.weights`` names them."""
    encoder = MAMLEncoder()
    if settings.weights:
        encoder.load_published(settings.weights)
    return encoder
