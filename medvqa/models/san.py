"""Stacked attention network (SAN) over visual vectors, driven by the last question state."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from medvqa.models.precision import softmax32


class AttentionStack(nn.Module):
    """One attention hop: ``tanh(W_q u + W_v v) -> dropout -> w`` gives weights over the V visual vectors."""

    def __init__(self, q_dim: int, v_dim: int, att_dim: int, dropout: float) -> None:
        super().__init__()
        self.q_proj = nn.Linear(q_dim, att_dim)
        self.v_proj = nn.Linear(v_dim, att_dim, bias=False)
        self.score = nn.Linear(att_dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        q_emb = self.q_proj(u)  # [B, att]
        v_emb = self.v_proj(v)  # [B, V, att]
        scores = self.score(self.dropout(torch.tanh(q_emb.unsqueeze(1) + v_emb)))  # [B, V, 1]
        scores = scores.masked_fill((v_emb.abs().sum(2) == 0).unsqueeze(2), float("-inf"))
        weights = softmax32(scores, dim=1)  # [B, V, 1]
        return q_emb, (v_emb * weights).sum(1)  # [B, att], [B, att]


class SAN(nn.Module):
    """``num_stacks`` hops; the first projects the question, later hops add their attended vector to ``u``."""

    def __init__(self, v_dim: int, q_dim: int = 1024, att_dim: int = 1024, num_stacks: int = 2,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.stacks = nn.ModuleList(
            AttentionStack(q_dim if i == 0 else att_dim, v_dim, att_dim, dropout) for i in range(num_stacks)
        )
        self.output_dim = att_dim

    def forward(self, v: Tensor, q_last: Tensor) -> Tensor:
        q_emb, attended = self.stacks[0](q_last, v)
        u = q_emb + attended  # [B, att]
        for stack in self.stacks[1:]:
            _, attended = stack(u, v)
            u = u + attended  # [B, att]
        return u
