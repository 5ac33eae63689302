"""Small building blocks shared by the GaussTR decoder and heads."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """Two linear layers with a ReLU between them: (..., in_dims) -> (..., out_dims)."""

    def __init__(self, in_dims: int, hidden_dims: int, out_dims: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dims, hidden_dims)
        self.fc2 = nn.Linear(hidden_dims, out_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """logit(x) with x clamped to [0, 1] and both x and 1 - x floored at eps (finite everywhere)."""
    x = x.clamp(0.0, 1.0)
    return torch.log(x.clamp(min=eps) / (1.0 - x).clamp(min=eps))


def sine_encoding(coords: torch.Tensor, num_feats: int, temperature: float = 10000.0) -> torch.Tensor:
    """Sinusoidal encoding of each coordinate: (..., K) -> (..., K * num_feats).

    Coordinate c becomes [sin a_0, cos a_0, sin a_1, cos a_1, ...] with
    a_j = 2 pi c / temperature^(2 j / num_feats); the K blocks follow the input order.
    """
    if num_feats % 2:
        raise ValueError(f"sine_encoding: num_feats must be even, got {num_feats}")
    j = torch.arange(num_feats // 2, dtype=torch.float32, device=coords.device)
    inv_freq = temperature ** (-2.0 * j / num_feats)
    angles = coords.float()[..., None] * (2 * math.pi) * inv_freq  # (..., K, F/2)
    enc = torch.stack([angles.sin(), angles.cos()], dim=-1)  # (..., K, F/2, 2)
    return enc.flatten(-3).to(coords.dtype)
