"""The answer classifier on top of the fused question-image vector."""
from __future__ import annotations

from torch import Tensor, nn

from medvqa.models.fc import wn_linear
from medvqa.models.precision import float32_forward


class AnswerClassifier(nn.Module):
    """``weight_norm(Linear(in, hidden)) -> ReLU -> Dropout -> weight_norm(Linear(hidden, n))``, in float32."""

    def __init__(self, in_dim: int, hidden_dim: int, num_answers: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.main = nn.Sequential(
            wn_linear(in_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout), wn_linear(hidden_dim, num_answers)
        )

    @float32_forward
    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)  # [B, num_answers]
