"""Exponential moving average of a model's weights (train.ema_decay): the weights a run is scored on.

With batch-1 steps the live weights carry the last steps' gradient noise; their running average does
not. After update n (1-based) every floating-point parameter and buffer is
ema = d_n ema + (1 - d_n) live with d_n = min(decay, (1 + n) / (10 + n)): the warm-up keeps the
randomly initialised start from weighing on a short run (0.18 at the first update, 0.9 by the 80th).
Integer buffers are copied.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """The averaged copy (`module`, eval mode, no gradients) of `model` and its update count."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"WeightAverage: decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def rate(self) -> float:
        """d_n of the next update (module docstring)."""
        n = self.updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards `model`'s current weights (same architecture as at construction)."""
        weight = 1.0 - self.rate()
        live = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.is_floating_point():
                value.lerp_(live[name].to(value.dtype), weight)
            else:
                value.copy_(live[name])
        self.updates += 1
