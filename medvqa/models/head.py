"""What every VQA head shares: its output type, answer-set loss and visual/language set-up."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medvqa.models.visual import VisualFrontEnd

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


class VQAHead(nn.Module):
    """A VQA head: ``forward(tokens, images=, features=, is_open=) -> VQAOutput`` and
    ``loss(output, targets, is_open)``.

    What the trainer asks of a head, so that it never needs to know one by name:

    - ``branches``: the answer sets it scores, by the names of ``AnswerVocab``'s sets: ``("all",)``,
      or ``("closed", "open")`` for a head with one classifier per answer type. ``answer_branches``
      pairs each with its size for the run's answer vocabulary.
    - ``routed_by_type``: each question goes to the branch of its answer type (gold types in
      training; under ``pubmedclip-legacy``, those the question-type classifier predicts).
    - ``loss``: its training loss, auxiliary losses of the visual branches included.
    """

    branches: tuple[str, ...] = ("all",)
    routed_by_type: bool = False

    def __init__(self, answer_sizes: Mapping[str, int], visual: VisualFrontEnd) -> None:
        super().__init__()
        missing = [name for name in self.branches if name not in answer_sizes]
        if missing:
            raise ValueError(f"{type(self).__name__} scores answer sets {list(self.branches)}, "
                             f"but the vocabulary has only {list(answer_sizes)}")
        self.answer_branches = [(name, answer_sizes[name]) for name in self.branches]
        self.visual = visual

    def init_word_embeddings(self, glove: np.ndarray, tfidf_glove: np.ndarray | None) -> None:
        """Set the word embeddings from GloVe (and its tf-idf weighted copy); a head without any ignores this."""

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
