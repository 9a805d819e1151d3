"""What every VQA head shares: its output type, answer-set loss and visual/language set-up."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medvqa.config import frozen_encoders
from medvqa.models.visual import VisualFrontEnd, create_encoder

LOSS_REDUCTIONS = ("instance", "mean")


@dataclass
class VQAOutput:
    """A head's answer scores and its auxiliary loss."""

    logits: Tensor  # [B, num_answers]; -inf outside the answer branch a question was routed to
    aux_loss: Tensor | None  # e.g. the weighted CDAE reconstruction loss; None without one


def answer_bce(logits: Tensor, targets: Tensor, reduction: str) -> Tensor:
    """Binary cross-entropy over answer scores.

    ``"instance"``: summed over answers, averaged over questions (MEVF); ``"mean"``: averaged over all entries.
    """
    if reduction == "instance":
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / logits.size(0)
    if reduction == "mean":
        return F.binary_cross_entropy_with_logits(logits, targets)
    raise ValueError(f"loss reduction {reduction!r}: expected one of {LOSS_REDUCTIONS}")


def build_visual(visual: dict[str, str | None], freeze: bool | list[str],
                 reconstruction_weight: float) -> VisualFrontEnd:
    """Encoders by name (value: weights file or None); ``freeze``: all of them (true) or the named ones."""
    frozen = frozen_encoders(freeze, list(visual))
    encoders = {}
    for name, weights in visual.items():
        kwargs = {"weights": weights}
        if name == "cdae":
            kwargs["reconstruction_weight"] = reconstruction_weight
        encoder = create_encoder(name, **kwargs)
        if name in frozen:
            encoder.freeze()
        encoders[name] = encoder
    return VisualFrontEnd(encoders)


class VQAHead(nn.Module):
    """Base: ``forward(tokens, images=, features=, is_open=) -> VQAOutput`` and ``loss(output, targets, is_open)``.

    ``answer_branches`` names the answer positions: one ``("all", n)`` block, or ``("closed", n1), ("open", n2)``.
    """

    visual: VisualFrontEnd
    answer_branches: list[tuple[str, int]]

    def init_word_embeddings(self, glove: np.ndarray, tfidf_glove: np.ndarray | None) -> None:
        raise NotImplementedError

    @property
    def num_answers(self) -> int:
        return sum(n for _, n in self.answer_branches)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


def masked_logits(parts: dict[str, Tensor], rows: dict[str, Tensor], branches: list[tuple[str, int]],
                  batch: int, like: Tensor) -> Tensor:
    """Scatter per-branch logits of their routed rows into ``[batch, sum(n)]`` filled with -inf elsewhere."""
    out = like.new_full((batch, sum(n for _, n in branches)), float("-inf"))
    start = 0
    for name, n in branches:
        if name in parts:
            out[rows[name], start:start + n] = parts[name].to(out.dtype)
        start += n
    return out


def route_rows(is_open: Tensor) -> dict[str, Tensor]:
    """Row indices per branch from a boolean ``[B]`` is-open vector."""
    return {"closed": torch.nonzero(~is_open).squeeze(1), "open": torch.nonzero(is_open).squeeze(1)}
