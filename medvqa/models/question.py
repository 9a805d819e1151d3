"""Question encoders: the one-layer RNN and the gated token attention of QCR."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from medvqa.models.embedding import WordEmbedding
from medvqa.models.precision import float32_forward, softmax32


class QuestionEncoder(nn.Module):
    """One-layer unidirectional LSTM or GRU with a zero initial state, in float32; returns every step's output."""

    def __init__(self, in_dim: int, hidden_dim: int = 1024, rnn: str = "LSTM") -> None:
        super().__init__()
        rnns = {"LSTM": nn.LSTM, "GRU": nn.GRU}
        if rnn not in rnns:
            raise ValueError(f"rnn {rnn!r}: expected one of {sorted(rnns)}")
        self.rnn = rnns[rnn](in_dim, hidden_dim, num_layers=1, batch_first=True)
        self.output_dim = hidden_dim

    @float32_forward
    def forward(self, emb: Tensor) -> Tensor:
        output, _ = self.rnn(emb)  # [B, T, hidden]
        return output


def xavier_linear(in_dim: int, out_dim: int) -> nn.Linear:
    """``Linear`` with Xavier-uniform weights and zero bias (the QCR initialisation)."""
    layer = nn.Linear(in_dim, out_dim)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class QuestionAttention(nn.Module):
    """Gated attention over tokens: ``tanh(W1 [e; h]) * sigmoid(W2 [e; h]) -> w``, softmax, weighted sum of ``h``."""

    def __init__(self, embed_dim: int = 300, hidden_dim: int = 1024) -> None:
        super().__init__()
        self.tanh_gate = xavier_linear(embed_dim + hidden_dim, hidden_dim)
        self.sigmoid_gate = xavier_linear(embed_dim + hidden_dim, hidden_dim)
        self.attn = xavier_linear(hidden_dim, 1)

    def forward(self, emb: Tensor, states: Tensor) -> Tensor:
        joint = torch.cat([emb, states], dim=2)  # [B, T, 300 + hidden]
        gated = torch.tanh(self.tanh_gate(joint)) * torch.sigmoid(self.sigmoid_gate(joint))  # [B, T, hidden]
        weights = softmax32(self.attn(gated).squeeze(2), dim=1)  # [B, T]
        return torch.bmm(weights.unsqueeze(1), states).squeeze(1)  # [B, hidden]


class AttendedQuestionMLP(nn.Module):
    """QCR's question network: its own 300-d GloVe embedding -> GRU -> gated token attention -> MLP.

    The MLP is ``Linear(d0, d1) -> ReLU -> Linear(d1, d2) -> Dropout -> ReLU -> Linear(d2, d3)``:
    ``(1024, 2048, 1024, 1024)`` gives QCR's type attention, ``(1024, 256, 64, 2)`` the type classifier.
    """

    def __init__(self, ntoken: int, dims: tuple[int, int, int, int], dropout: float = 0.5) -> None:
        super().__init__()
        self.w_emb = WordEmbedding(ntoken, tfidf=False)
        self.q_emb = QuestionEncoder(self.w_emb.output_dim, dims[0], rnn="GRU")
        self.q_att = QuestionAttention(self.w_emb.output_dim, dims[0])
        self.mlp = nn.Sequential(
            xavier_linear(dims[0], dims[1]), nn.ReLU(), xavier_linear(dims[1], dims[2]),
            nn.Dropout(dropout), nn.ReLU(), xavier_linear(dims[2], dims[3]),
        )
        self.output_dim = dims[3]

    def forward(self, tokens: Tensor) -> Tensor:
        emb = self.w_emb(tokens)  # [B, T, 300]
        attended = self.q_att(emb, self.q_emb(emb))  # [B, d0]
        return self.mlp(attended)  # [B, d3]
