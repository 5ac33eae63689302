"""Initial 2D reference points of the decoder queries, normalised image coordinates in [0, 1]."""

from __future__ import annotations

import math

import torch


def random_reference_points(
    batch: int, views: int, queries: int, generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Uniform points, drawn independently per sample and view (the authors' scheme): (B, N, Q, 2)."""
    if generator is not None:  # draw where the generator lives, then move
        return torch.rand(batch, views, queries, 2, generator=generator, device=generator.device).to(device)
    return torch.rand(batch, views, queries, 2, device=device)


def stratified_reference_points(
    batch: int, views: int, queries: int, generator: torch.Generator, device: torch.device | str | None = None
) -> torch.Tensor:
    """Jittered stratified points: (B, N, Q, 2), identical for every sample of the batch.

    The unit square is cut into g x g cells (g = ceil(sqrt(Q))); each view takes Q distinct cells
    (a random choice) and one uniform point inside each, all drawn from `generator`, so a seeded
    generator gives the same points on every call.
    """
    cells = math.ceil(math.sqrt(queries))
    per_view = []
    for _ in range(views):
        index = torch.randperm(cells * cells, generator=generator, device=generator.device)[:queries]
        corner = torch.stack([index % cells, index // cells], dim=-1).float()
        jitter = torch.rand(queries, 2, generator=generator, device=generator.device)
        per_view.append((corner + jitter) / cells)
    return torch.stack(per_view).to(device)[None].expand(batch, -1, -1, -1)
