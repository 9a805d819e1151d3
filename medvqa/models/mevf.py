"""MEVF: mixture of enhanced visual features (MAML + CDAE) with a BAN or SAN attention head."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

from medvqa.models.ban import BAN
from medvqa.models.classifier import AnswerClassifier
from medvqa.models.embedding import WordEmbedding
from medvqa.models.head import VQAHead, VQAOutput, answer_bce, build_visual
from medvqa.models.question import QuestionEncoder
from medvqa.models.registry import register_model
from medvqa.models.san import SAN


@dataclass
class MEVFConfig:
    ntoken: int  # question dictionary size (the embedding has ntoken + 1 rows, the last for padding)
    num_answers: int  # answer set size (458 on VQA-RAD)
    attention: str = "ban"  # "ban": all question states, "san": the last state
    visual: dict[str, str | None] = field(default_factory=lambda: {"maml": None, "cdae": None})  # encoder -> weights
    freeze_visual: bool | list[str] = False  # all encoders or the named ones: features come from the cache
    rnn: str = "LSTM"
    hidden_dim: int = 1024
    glimpses: int = 2  # BAN only
    num_stacks: int = 2  # SAN only
    tfidf: bool = True  # 600-d tokens (GloVe + tf-idf GloVe)
    dropout: float = 0.5  # classifier dropout
    reconstruction_weight: float = 0.001
    loss_reduction: str = "instance"


class MEVF(VQAHead):
    """Tokens ``[B, 12]`` + images -> answer logits ``[B, num_answers]`` (+ CDAE reconstruction loss)."""

    def __init__(self, config: MEVFConfig) -> None:
        super().__init__()
        if config.attention not in ("ban", "san"):
            raise ValueError(f"attention {config.attention!r}: expected 'ban' or 'san'")
        self.config = config
        self.answer_branches = [("all", config.num_answers)]
        self.visual = build_visual(config.visual, config.freeze_visual, config.reconstruction_weight)
        self.w_emb = WordEmbedding(config.ntoken, tfidf=config.tfidf)
        self.q_emb = QuestionEncoder(self.w_emb.output_dim, config.hidden_dim, config.rnn)
        v_dim = self.visual.output_dim
        if config.attention == "ban":
            self.fusion = BAN(v_dim, config.hidden_dim, config.glimpses)
        else:
            self.fusion = SAN(v_dim, config.hidden_dim, config.hidden_dim, config.num_stacks)
        self.classifier = AnswerClassifier(config.hidden_dim, 2 * config.hidden_dim, config.num_answers,
                                           config.dropout)

    def init_word_embeddings(self, glove: np.ndarray, tfidf_glove: np.ndarray | None) -> None:
        self.w_emb.init_weights(glove, tfidf_glove)

    def forward(self, tokens: Tensor, images: dict[str, Tensor] | None = None,
                features: dict[str, Tensor] | None = None, is_open: Tensor | None = None) -> VQAOutput:
        visual = self.visual(images, features)  # v: [B, 1, v_dim]
        states = self.q_emb(self.w_emb(tokens))  # [B, 12, hidden]
        if self.config.attention == "ban":
            fused = self.fusion(visual.v, states)  # [B, hidden]
        else:
            fused = self.fusion(visual.v, states[:, -1])  # [B, hidden]
        return VQAOutput(self.classifier(fused), visual.aux_loss)

    def loss(self, output: VQAOutput, targets: Tensor, is_open: Tensor | None = None) -> Tensor:
        loss = answer_bce(output.logits.float(), targets, self.config.loss_reduction)
        return loss if output.aux_loss is None else loss + output.aux_loss


@register_model("mevf_ban")
def mevf_ban(**cfg) -> MEVF:
    """MEVF with bilinear attention (LSTM question encoder, 2 glimpses)."""
    return MEVF(MEVFConfig(attention="ban", **cfg))


@register_model("mevf_san")
def mevf_san(**cfg) -> MEVF:
    """MEVF with 2-stack stacked attention."""
    return MEVF(MEVFConfig(attention="san", **cfg))
