"""MEVF: mixture of enhanced visual features (MAML + CDAE) with a BAN or SAN attention head."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from medvqa.models.ban import BAN
from medvqa.models.classifier import AnswerClassifier
from medvqa.models.embedding import WordEmbedding
from medvqa.models.head import VQAHead, VQAOutput, answer_bce
from medvqa.models.question import QuestionEncoder
from medvqa.models.registry import register_head
from medvqa.models.san import SAN
from medvqa.models.visual import VisualFrontEnd


@dataclass
class MEVFSettings:
    """``model.head`` of a MEVF run (defaults: the published MEVF recipe)."""

    rnn: str = "LSTM"  # question encoder: "LSTM" or "GRU"
    hidden_dim: int = 1024
    glimpses: int = 2  # BAN only
    num_stacks: int = 2  # SAN only
    tfidf: bool = True  # 600-d tokens (GloVe + tf-idf GloVe)
    dropout: float = 0.5  # classifier dropout
    loss_reduction: str = "instance"  # BCE summed over answers, averaged over questions; or "mean"


class MEVF(VQAHead):
    """Tokens ``[B, 12]`` + images -> answer logits ``[B, num_answers]`` (+ CDAE reconstruction loss)."""

    def __init__(self, settings: MEVFSettings, attention: str, ntoken: int, answer_sizes: Mapping[str, int],
                 visual: VisualFrontEnd) -> None:
        super().__init__(answer_sizes, visual)
        if attention not in ("ban", "san"):
            raise ValueError(f"attention {attention!r}: expected 'ban' or 'san'")
        self.settings, self.attention = settings, attention
        self.w_emb = WordEmbedding(ntoken, tfidf=settings.tfidf)
        self.q_emb = QuestionEncoder(self.w_emb.output_dim, settings.hidden_dim, settings.rnn)
        v_dim = self.visual.output_dim
        if attention == "ban":
            self.fusion = BAN(v_dim, settings.hidden_dim, settings.glimpses)
        else:
            self.fusion = SAN(v_dim, settings.hidden_dim, settings.hidden_dim, settings.num_stacks)
        self.classifier = AnswerClassifier(settings.hidden_dim, 2 * settings.hidden_dim, self.num_answers,
                                           settings.dropout)

    def init_word_embeddings(self, glove: np.ndarray, tfidf_glove: np.ndarray | None) -> None:
        self.w_emb.init_weights(glove, tfidf_glove)

    def forward(self, tokens: Tensor, images: dict[str, Tensor] | None = None,
                features: dict[str, Tensor] | None = None, is_open: Tensor | None = None) -> VQAOutput:
        visual = self.visual(images, features)  # v: [B, 1, v_dim]
        states = self.q_emb(self.w_emb(tokens))  # [B, 12, hidden]
        if self.attention == "ban":
            fused = self.fusion(visual.v, states)  # [B, hidden]
        else:
            fused = self.fusion(visual.v, states[:, -1])  # [B, hidden]
        return VQAOutput(self.classifier(fused), visual.aux_loss)

    def loss(self, output: VQAOutput, targets: Tensor, is_open: Tensor | None = None) -> Tensor:
        loss = answer_bce(output.logits.float(), targets, self.settings.loss_reduction)
        return loss if output.aux_loss is None else loss + output.aux_loss


@register_head("mevf_ban", settings=MEVFSettings)
def mevf_ban(settings: MEVFSettings, **context: Any) -> MEVF:
    """MEVF with bilinear attention over all question states."""
    return MEVF(settings, "ban", **context)


@register_head("mevf_san", settings=MEVFSettings)
def mevf_san(settings: MEVFSettings, **context: Any) -> MEVF:
    """MEVF with stacked attention on the last question state."""
    return MEVF(settings, "san", **context)
