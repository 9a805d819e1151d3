"""Float32 islands inside bfloat16 autocast.

Under ``train.bf16`` the matrix products run in bfloat16 (8 bits of mantissa). Three places lose
accuracy there: the answer classifier (logits of hundreds of answers a few hundredths apart, and the
gradient of the loss flowing back through them), the softmax of attention maps, and the recurrence of
the question RNN, whose rounding compounds over the tokens. ``float32_forward`` runs a module's forward
in float32 whatever the autocast state; outside autocast it changes nothing.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor, nn

M = TypeVar("M", bound=nn.Module)


def _to_float32(value: object) -> object:
    """Half-precision tensors cast up to float32; anything else as it is."""
    return value.float() if isinstance(value, Tensor) and value.dtype in (torch.bfloat16, torch.float16) else value


def float32_forward(forward: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Decorate ``nn.Module.forward``: half-precision tensor arguments cast to float32, autocast off inside."""

    @functools.wraps(forward)
    def wrapped(self: nn.Module, *args: object, **kwargs: object) -> Tensor:
        device = next((a.device.type for a in args if isinstance(a, Tensor)), "cpu")
        with torch.autocast(device, enabled=False):
            return forward(self, *map(_to_float32, args), **{k: _to_float32(v) for k, v in kwargs.items()})

    return wrapped


def softmax32(x: Tensor, dim: int) -> Tensor:
    """Softmax computed in float32 (attention maps), whatever the input's precision."""
    return torch.softmax(x.float(), dim=dim)
