"""Weight-normalised fully connected stacks shared by BAN, SAN and the classifiers."""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


def wn_linear(in_dim: int, out_dim: int, bias: bool = True) -> nn.Module:
    """``Linear`` with weight normalisation over the whole matrix (one scalar gain)."""
    return weight_norm(nn.Linear(in_dim, out_dim, bias=bias), dim=None)


class FCNet(nn.Module):
    """``[Dropout] -> weight_norm(Linear) -> activation`` for each consecutive pair of ``dims``.

    ``activation=""`` leaves the layers linear.
    """

    def __init__(self, dims: list[int], activation: str = "ReLU", dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for in_dim, out_dim in zip(dims[:-1], dims[1:]):
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            layers.append(wn_linear(in_dim, out_dim))
            if activation:
                layers.append(getattr(nn, activation)())
        self.main = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)
