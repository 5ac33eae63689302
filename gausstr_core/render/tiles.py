"""Assign projected Gaussians to square image tiles, front to back (non-differentiable)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class TileBins:
    """Per non-empty tile, its Gaussians sorted by depth (front to back).

    tile_ids: (T,) int64 flat tile index image * tiles_h * tiles_w + row * tiles_w + col.
    counts: (T,) int64 Gaussians per tile; offsets: (T,) start of each tile in `gaussian_ids`.
    gaussian_ids: (E,) int64 flat index image * G + gaussian, grouped by tile, depth-sorted.
    tiles_h, tiles_w: tiles per image along v and u.
    """

    tile_ids: torch.Tensor
    counts: torch.Tensor
    offsets: torch.Tensor
    gaussian_ids: torch.Tensor
    tiles_h: int
    tiles_w: int


@torch.no_grad()
def bin_gaussians(
    means2d: torch.Tensor,
    radii: torch.Tensor,
    depths: torch.Tensor,
    image_size: tuple[int, int],
    tile_size: int,
) -> TileBins:
    """List the tiles each Gaussian's bounding box touches, like gsplat's `isect_tiles`.

    means2d: (I, G, 2) pixels; radii: (I, G, 2) int half sizes (0 = culled); depths: (I, G), m;
    image_size (H, W). A Gaussian enters tile columns floor((u - r_u) / s) .. ceil((u + r_u) / s)
    (exclusive), clipped to the image, and likewise for rows.
    """
    num_images, num_gaussians = depths.shape
    tiles_h, tiles_w = math.ceil(image_size[0] / tile_size), math.ceil(image_size[1] / tile_size)
    device = depths.device

    order = torch.argsort(depths, dim=-1, stable=True)  # (I, G) front to back per image
    centre = torch.take_along_dim(means2d.detach(), order[..., None], dim=1)
    radius = torch.take_along_dim(radii, order[..., None], dim=1).to(centre.dtype)
    limit = centre.new_tensor([tiles_w, tiles_h])
    lo = torch.minimum(torch.floor((centre - radius) / tile_size).clamp(min=0), limit).long()
    hi = torch.minimum(torch.ceil((centre + radius) / tile_size).clamp(min=0), limit).long()
    span = (hi - lo).clamp(min=0)  # (I, G, 2) tiles along u, v
    counts = (span[..., 0] * span[..., 1] * (radius > 0).all(-1)).flatten()  # (I * G,)

    flat_ids = (torch.arange(num_images, device=device)[:, None] * num_gaussians + order).flatten()
    gaussian_ids = torch.repeat_interleave(flat_ids, counts)  # (E,) depth-sorted within image
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(gaussian_ids.numel(), device=device) - torch.repeat_interleave(starts, counts)
    lo_e = torch.repeat_interleave(lo.reshape(-1, 2), counts, dim=0)
    span_u = torch.repeat_interleave(span[..., 0].flatten(), counts)
    col = lo_e[:, 0] + local % span_u.clamp(min=1)
    row = lo_e[:, 1] + local // span_u.clamp(min=1)
    image = gaussian_ids // num_gaussians
    tile = (image * tiles_h + row) * tiles_w + col

    tile, perm = torch.sort(tile, stable=True)  # stable: keeps depth order inside each tile
    tile_ids, tile_counts = torch.unique_consecutive(tile, return_counts=True)
    return TileBins(
        tile_ids=tile_ids,
        counts=tile_counts,
        offsets=torch.cumsum(tile_counts, 0) - tile_counts,
        gaussian_ids=gaussian_ids[perm],
        tiles_h=tiles_h,
        tiles_w=tiles_w,
    )
