"""The Gaussian scene representation predicted by GaussTR."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class Gaussians:
    """A batch of 3D Gaussians (batch-first).

    means: (B, N, 3) ego frame, m.
    scales: (B, N, 3) standard deviations along the local axes, m.
    quats: (B, N, 4) w x y z unit quaternions, local axes -> ego frame.
    covariances: (B, N, 3, 3) ego frame, m^2 (R S S^T R^T).
    opacities: (B, N) in [0, 1].
    features: (B, N, C) foundation-model-aligned features.
    """

    means: torch.Tensor
    scales: torch.Tensor
    quats: torch.Tensor
    covariances: torch.Tensor
    opacities: torch.Tensor
    features: torch.Tensor

    def __getitem__(self, index: int | slice) -> Gaussians:
        """Select along the batch dimension (keeps it for a slice, drops it for an int)."""
        return Gaussians(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to(self, *args, **kwargs) -> Gaussians:
        return Gaussians(**{f.name: getattr(self, f.name).to(*args, **kwargs) for f in fields(self)})

    def detach(self) -> Gaussians:
        return Gaussians(**{f.name: getattr(self, f.name).detach() for f in fields(self)})
