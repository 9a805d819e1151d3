"""Bilinear attention network (BAN): bilinear attention maps and the residual bilinear pooling stack."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from medvqa.models.fc import FCNet
from medvqa.models.precision import softmax32


class BCNet(nn.Module):
    """Low-rank bilinear map between visual ``[B, V, v_dim]`` and question ``[B, Q, q_dim]`` features.

    With ``glimpses`` set it returns attention logits ``[B, glimpses, V, Q]``; ``pool`` computes the
    bilinear feature ``[B, h_dim]`` of one attention map. ``k > 1`` widens the rank and sum-pools back.
    """

    def __init__(self, v_dim: int, q_dim: int, h_dim: int, glimpses: int | None = None, k: int = 3,
                 dropout: tuple[float, float] = (0.2, 0.5)) -> None:
        super().__init__()
        self.k = k
        self.v_net = FCNet([v_dim, h_dim * k], dropout=dropout[0])
        self.q_net = FCNet([q_dim, h_dim * k], dropout=dropout[0])
        self.dropout = nn.Dropout(dropout[1])
        if glimpses is not None:
            self.h_mat = nn.Parameter(torch.randn(glimpses, h_dim * k))
            self.h_bias = nn.Parameter(torch.randn(1, glimpses, 1, 1))

    def forward(self, v: Tensor, q: Tensor) -> Tensor:
        v_ = self.dropout(self.v_net(v))  # [B, V, h*k]
        q_ = self.q_net(q)  # [B, Q, h*k]
        return torch.einsum("bvd,gd,bqd->bgvq", v_, self.h_mat, q_) + self.h_bias  # [B, G, V, Q]

    def pool(self, v: Tensor, q: Tensor, att: Tensor) -> Tensor:
        v_ = self.v_net(v)  # [B, V, h*k]
        q_ = self.q_net(q)  # [B, Q, h*k]
        fused = torch.einsum("bvd,bvq,bqd->bd", v_, att, q_)  # [B, h*k]
        if self.k > 1:
            fused = fused.view(fused.size(0), -1, self.k).sum(2)  # [B, h]
        return fused


class BiAttention(nn.Module):
    """Attention maps ``[B, G, V, Q]``: bilinear logits, masked where a visual vector is all zero, softmax over V x Q."""

    def __init__(self, v_dim: int, q_dim: int, h_dim: int, glimpses: int) -> None:
        super().__init__()
        self.logits = weight_norm(BCNet(v_dim, q_dim, h_dim, glimpses, k=3), name="h_mat", dim=None)

    def forward(self, v: Tensor, q: Tensor) -> Tensor:
        logits = self.logits(v, q)  # [B, G, V, Q]
        empty = (v.abs().sum(2) == 0)[:, None, :, None]  # [B, 1, V, 1]
        logits = logits.masked_fill(empty, float("-inf"))
        b, g, nv, nq = logits.shape
        return softmax32(logits.reshape(b, g, nv * nq), dim=2).view(b, g, nv, nq)


class BiResidual(nn.Module):
    """For each glimpse: bilinear pooling under its attention map, projected and added to the question states."""

    def __init__(self, v_dim: int, h_dim: int, glimpses: int) -> None:
        super().__init__()
        self.b_net = nn.ModuleList(BCNet(v_dim, h_dim, h_dim, None, k=1) for _ in range(glimpses))
        self.q_prj = nn.ModuleList(FCNet([h_dim, h_dim], activation="", dropout=0.2) for _ in range(glimpses))

    def forward(self, v: Tensor, q: Tensor, att: Tensor) -> Tensor:
        for g, (b_net, q_prj) in enumerate(zip(self.b_net, self.q_prj)):
            fused = b_net.pool(v, q, att[:, g])  # [B, h]
            q = q + q_prj(fused.unsqueeze(1))  # [B, Q, h]
        return q.sum(1)  # [B, h]


class BAN(nn.Module):
    """Visual ``[B, V, v_dim]`` and question states ``[B, Q, h]`` -> fused vector ``[B, h]``."""

    def __init__(self, v_dim: int, h_dim: int = 1024, glimpses: int = 2) -> None:
        super().__init__()
        self.attention = BiAttention(v_dim, h_dim, h_dim, glimpses)
        self.residual = BiResidual(v_dim, h_dim, glimpses)
        self.output_dim = h_dim

    def forward(self, v: Tensor, q: Tensor) -> Tensor:
        return self.residual(v, q, self.attention(v, q))
