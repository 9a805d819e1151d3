"""The convolutional denoising auto-encoder (CDAE) visual branch (128x128 grayscale)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data_prep.input_spec import InputSpec
from medvqa.models.visual import VisualEncoder, register_encoder

CDAE_INPUT = InputSpec(key="gray128", size=128, channels=1)
CODE_SHAPE = (16, 32, 32)


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` that adds its bias after the convolution: the same values, and a bias gradient
    computed as a plain reduction. PyTorch's CPU backward of a transposed convolution with a bias spends about
    ten times longer on that gradient (``tran_conv2``, batch 32: 150 ms of a 0.9 s fine-tuning step)."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if self.bias is None or output_size is not None:
            return super().forward(x, output_size)
        y = F.conv_transpose2d(x, self.weight, None, self.stride, self.padding, self.output_padding, self.groups,
                               self.dilation)
        return y.add_(self.bias[:, None, None])  # in place: the convolution's backward does not need its output


class CDAEEncoder(VisualEncoder):
    """Encoder 1x128x128 -> 16x32x32 code, flattened to 16384 (the head projects it to 64); decoder back to 1x128x128.

    Parameter names follow the published state dict (conv1..conv5, tran_conv1..2) so it loads as is.
    """

    input_spec = CDAE_INPUT
    output_dim = CODE_SHAPE[0] * CODE_SHAPE[1] * CODE_SHAPE[2]
    projection_dim = 64

    def __init__(self, reconstruction_weight: float = 0.001) -> None:
        super().__init__()
        self.reconstruction_weight = reconstruction_weight
        self.conv1 = nn.Conv2d(1, 64, 3, padding=1)
        self.conv2 = nn.Conv2d(64, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 16, 3, padding=1)
        self.tran_conv1 = ConvTranspose2d(16, 32, 3, stride=2, padding=1, output_padding=1)
        self.conv4 = nn.Conv2d(32, 32, 3, padding=1)
        self.tran_conv2 = ConvTranspose2d(32, 64, 3, stride=2, padding=1, output_padding=1)
        self.conv5 = nn.Conv2d(64, 1, 3, padding=1)

    def code(self, images: Tensor) -> Tensor:
        # ReLU after the pooling: max and ReLU commute (values and gradients), and the ReLU then runs on a
        # quarter of the activations. In place: a convolution's backward needs its input, not its output.
        x = F.relu(F.max_pool2d(self.conv1(images), 2), inplace=True)  # [B, 64, 64, 64]
        x = F.relu(F.max_pool2d(self.conv2(x), 2), inplace=True)  # [B, 32, 32, 32]
        return F.relu(self.conv3(x), inplace=True)  # [B, 16, 32, 32]

    def decode(self, code: Tensor) -> Tensor:
        x = F.relu(self.tran_conv1(code), inplace=True)  # [B, 32, 64, 64]
        x = F.relu(self.conv4(x), inplace=True)  # [B, 32, 64, 64]
        x = F.relu(self.tran_conv2(x), inplace=True)  # [B, 64, 128, 128]
        return torch.sigmoid(self.conv5(x))  # [B, 1, 128, 128]

    def encode(self, images: Tensor) -> Tensor:
        return self.code(images).flatten(1)  # [B, 16384]

    def auxiliary_loss(self, images: Tensor, features: Tensor) -> Tensor:
        """``reconstruction_weight`` x MSE between the decoded code and the input image."""
        recon = self.decode(features.view(-1, *CODE_SHAPE))  # [B, 1, 128, 128]
        return self.reconstruction_weight * F.mse_loss(recon.float(), images.float())

    def load_published(self, path: str | Path) -> None:
        """Load ``pretrained_ae.pth`` (a plain state dict); missing or unexpected keys are named."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        result = self.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(f"{path}: missing keys {result.missing_keys}, unexpected keys {result.unexpected_keys}")


@dataclass
class CDAESettings:
    weights: str = ""  # pretrained_ae.pth; "prepared": the copy in the prepared data; "": random init
    reconstruction_weight: float = 0.001  # weight of the reconstruction MSE in the training loss


@register_encoder("cdae", settings=CDAESettings)
def cdae(settings: CDAESettings) -> CDAEEncoder:
    """The CDAE, from the published weights when ``settings.weights`` names them."""
    encoder = CDAEEncoder(settings.reconstruction_weight)
    if settings.weights:
        encoder.load_published(settings.weights)
    return encoder
