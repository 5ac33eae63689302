"""Axis-aligned voxel grid in the ego frame (Occ3D convention)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

OCC3D_RANGE = (-40.0, -40.0, -1.0, 40.0, 40.0, 5.4)
OCC3D_VOXEL_SIZE = 0.4


@dataclass(frozen=True)
class VoxelGrid:
    """A regular grid of cubic voxels.

    range: (x_min, y_min, z_min, x_max, y_max, z_max) ego frame, m.
    size: voxel edge, m. Voxel (i, j, k) has centre min + (index + 0.5) * size.
    Arrays over the grid are indexed [x, y, z] (x-major).
    """

    range: tuple[float, float, float, float, float, float] = OCC3D_RANGE
    size: float = OCC3D_VOXEL_SIZE

    def __post_init__(self) -> None:
        if len(self.range) != 6:
            raise ValueError(f"VoxelGrid.range needs 6 numbers, got {self.range!r}")
        if self.size <= 0:
            raise ValueError(f"VoxelGrid.size must be positive, got {self.size}")
        for lo, hi, axis in zip(self.range[:3], self.range[3:], "xyz"):
            if hi <= lo:
                raise ValueError(f"VoxelGrid.range: {axis}_max {hi} <= {axis}_min {lo}")
        object.__setattr__(self, "range", tuple(float(v) for v in self.range))

    @property
    def min_corner(self) -> tuple[float, float, float]:
        return self.range[:3]

    @property
    def dims(self) -> tuple[int, int, int]:
        """Number of voxels along x, y, z."""
        return tuple(int(round((hi - lo) / self.size)) for lo, hi in zip(self.range[:3], self.range[3:]))

    def centers(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Voxel centres, (X, Y, Z, 3) ego frame, m."""
        axes = [
            lo + (torch.arange(n, device=device, dtype=dtype) + 0.5) * self.size
            for lo, n in zip(self.min_corner, self.dims)
        ]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)

    def contains(self, points: torch.Tensor) -> torch.Tensor:
        """Mask of points inside the grid volume; points (..., 3) ego frame, m -> (...) bool."""
        lo = points.new_tensor(self.range[:3])
        hi = points.new_tensor(self.range[3:])
        return ((points >= lo) & (points < hi)).all(dim=-1)
