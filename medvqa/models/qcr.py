"""QCR+TCR: separate BAN reasoning for closed and open questions, each conditioned on a question-attention vector."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import Tensor, nn

from medvqa.models.ban import BAN
from medvqa.models.classifier import AnswerClassifier
from medvqa.models.embedding import WordEmbedding
from medvqa.models.head import VQAHead, VQAOutput, answer_bce, build_visual, masked_logits, route_rows
from medvqa.models.question import AttendedQuestionMLP, QuestionEncoder
from medvqa.models.registry import register_model


@dataclass
class QCRConfig:
    ntoken: int
    num_closed: int  # closed-branch answer set (56 on VQA-RAD)
    num_open: int  # open-branch answer set (431 on VQA-RAD)
    visual: dict[str, str | None] = field(default_factory=lambda: {"maml": None, "cdae": None})
    freeze_visual: bool | list[str] = False
    rnn: str = "GRU"
    hidden_dim: int = 1024
    glimpses: int = 2
    tfidf: bool = True
    dropout: float = 0.5
    reconstruction_weight: float = 0.001
    loss_reduction: str = "mean"


class QCR(VQAHead):
    """Tokens + images + routing ``is_open [B]`` -> logits ``[B, num_closed + num_open]``.

    Each question goes through the BAN stack and classifier of its branch only; the other branch's
    positions are -inf. The BAN output is multiplied by the question-conditioned vector (QCR) first.
    """

    def __init__(self, config: QCRConfig) -> None:
        super().__init__()
        self.config = config
        self.answer_branches = [("closed", config.num_closed), ("open", config.num_open)]
        self.visual = build_visual(config.visual, config.freeze_visual, config.reconstruction_weight)
        self.w_emb = WordEmbedding(config.ntoken, tfidf=config.tfidf)
        self.q_emb = QuestionEncoder(self.w_emb.output_dim, config.hidden_dim, config.rnn)
        h = config.hidden_dim
        self.type_attention = AttendedQuestionMLP(config.ntoken, (h, 2 * h, h, h))
        self.fusion = nn.ModuleDict({name: BAN(self.visual.output_dim, h, config.glimpses)
                                     for name, _ in self.answer_branches})
        self.classifiers = nn.ModuleDict({name: AnswerClassifier(h, 2 * h, n, config.dropout)
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
                                         self.config.loss_reduction)
            start += n
        return loss if output.aux_loss is None else loss + output.aux_loss


@register_model("qcr")
def qcr(**cfg) -> QCR:
    """QCR+TCR with two BAN stacks (GRU question encoder, 2 glimpses)."""
    return QCR(QCRConfig(**cfg))
