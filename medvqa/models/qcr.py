"""QCR+TCR: separate BAN reasoning for closed and open questions, each conditioned on a question-attention vector."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor, nn

from medvqa.models.ban import BAN
from medvqa.models.classifier import AnswerClassifier
from medvqa.models.embedding import WordEmbedding
from medvqa.models.head import VQAHead, VQAOutput, answer_bce, masked_logits, route_rows
from medvqa.models.question import AttendedQuestionMLP, QuestionEncoder
from medvqa.models.registry import register_head
from medvqa.models.visual import VisualFrontEnd


@dataclass
class QCRSettings:
    """``model.head`` of a QCR+TCR run (defaults: the published QCR recipe)."""

    rnn: str = "GRU"  # question encoder: "GRU" or "LSTM"
    hidden_dim: int = 1024
    glimpses: int = 2  # BAN glimpses of each branch (PubMedCLIP's QCR configs: 10)
    tfidf: bool = True  # 600-d tokens (GloVe + tf-idf GloVe)
    dropout: float = 0.5  # classifier dropout
    loss_reduction: str = "mean"  # BCE averaged over all entries, per branch; or "instance"


class QCR(VQAHead):
    """Tokens + images + routing ``is_open [B]`` -> logits ``[B, num_closed + num_open]``.

    Each question goes through the BAN stack and classifier of its branch only; the other branch's
    positions are -inf. The BAN output is multiplied by the question-conditioned vector (QCR) first.
    """

    branches = ("closed", "open")
    routed_by_type = True

    def __init__(self, settings: QCRSettings, ntoken: int, answer_sizes: Mapping[str, int],
                 visual: VisualFrontEnd) -> None:
        super().__init__(answer_sizes, visual)
        self.settings = settings
        self.w_emb = WordEmbedding(ntoken, tfidf=settings.tfidf)
        self.q_emb = QuestionEncoder(self.w_emb.output_dim, settings.hidden_dim, settings.rnn)
        h = settings.hidden_dim
        self.type_attention = AttendedQuestionMLP(ntoken, (h, 2 * h, h, h))
        self.fusion = nn.ModuleDict({name: BAN(self.visual.output_dim, h, settings.glimpses)
                                     for name, _ in self.answer_branches})
        self.classifiers = nn.ModuleDict({name: AnswerClassifier(h, 2 * h, n, settings.dropout)
                                          for name, n in self.answer_branches})

    def init_word_embeddings(self, glove: np.ndarray, tfidf_glove: np.ndarray | None) -> None:
        self.w_emb.init_weights(glove, tfidf_glove)
        self.type_attention.w_emb.init_weights(glove)

    def forward(self, tokens: Tensor, images: dict[str, Tensor] | None = None,
                features: dict[str, Tensor] | None = None, is_open: Tensor | None = None) -> VQAOutput:
        if is_open is None:
            raise ValueError("QCR routes each question by type: pass is_open")
        visual = self.visual(images, features)  # v: [B, 1, v_dim]
        states = self.q_emb(self.w_emb(tokens))  # [B, 12, hidden]
        condition = self.type_attention(tokens)  # [B, hidden]
        rows = route_rows(is_open)
        parts = {}
        for name, _ in self.answer_branches:
            r = rows[name]
            if r.numel():
                fused = self.fusion[name](visual.v[r], states[r]) * condition[r]  # [B_branch, hidden]
                parts[name] = self.classifiers[name](fused)  # [B_branch, n_branch]
        logits = masked_logits(parts, rows, self.answer_branches, tokens.size(0), states)
        return VQAOutput(logits, visual.aux_loss)

    def loss(self, output: VQAOutput, targets: Tensor, is_open: Tensor | None = None) -> Tensor:
        """BCE of each branch over its routed questions, summed over branches, plus the auxiliary loss."""
        rows = route_rows(is_open)
        loss = output.logits.new_zeros((), dtype=targets.dtype)
        start = 0
        for name, n in self.answer_branches:
            r = rows[name]
            if r.numel():
                cols = slice(start, start + n)
                loss = loss + answer_bce(output.logits[r, cols].float(), targets[r, cols],
                                         self.settings.loss_reduction)
            start += n
        return loss if output.aux_loss is None else loss + output.aux_loss


@register_head("qcr", settings=QCRSettings)
def qcr(settings: QCRSettings, **context: Any) -> QCR:
    """QCR+TCR with two BAN stacks, one per answer type."""
    return QCR(settings, **context)
