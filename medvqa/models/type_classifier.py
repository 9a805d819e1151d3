"""The question-type (closed vs open) classifier that routes heads ``routed_by_type`` (QCR) at evaluation."""
from __future__ import annotations

import numpy as np
from torch import Tensor, nn

from medvqa.models.question import AttendedQuestionMLP


class QuestionTypeClassifier(nn.Module):
    """Tokens ``[B, 12]`` -> logits ``[B, 2]`` (0 closed, 1 open); dropout only in training mode."""

    def __init__(self, ntoken: int, hidden_dim: int = 1024, dropout: float = 0.5) -> None:
        super().__init__()
        self.net = AttendedQuestionMLP(ntoken, (hidden_dim, 256, 64, 2), dropout)

    def init_word_embeddings(self, glove: np.ndarray, tfidf_glove: np.ndarray | None = None) -> None:
        self.net.w_emb.init_weights(glove)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.net(tokens)  # [B, 2]

