"""Assign projected Gaussians to square image tiles, front to back (non-differentiable)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gausstr_core.render.projection import ALPHA_THRESHOLD


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
    conics: torch.Tensor,
    opacities: torch.Tensor,
    radii: torch.Tensor,
    depths: torch.Tensor,
    image_size: tuple[int, int],
    tile_size: int,
) -> TileBins:
    """List the tiles each Gaussian can reach with alpha >= 1/255.

    means2d: (I, G, 2) pixels; conics: (I, G, 3); opacities: (I, G); radii: (I, G, 2) int half
    sizes (0 = culled); depths: (I, G), m; image_size (H, W). Like gsplat's `isect_tiles`, a
    Gaussian enters tile columns floor((u - r_u) / s) .. ceil((u + r_u) / s) (exclusive), clipped
    to the image, and likewise for rows; then tiles where opacity x exp(-sigma) stays below 1/255
    over the rectangle spanned by the tile's pixel centres are dropped (this changes no pixel).
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

    max_sigma = torch.log(opacities.detach().reshape(-1)[gaussian_ids] / ALPHA_THRESHOLD)
    pixel_lo = torch.stack([col, row], -1).to(centre.dtype) * tile_size + 0.5
    sigma = _min_sigma_over_rectangle(
        means2d.detach().reshape(-1, 2)[gaussian_ids], conics.detach().reshape(-1, 3)[gaussian_ids],
        pixel_lo, pixel_lo + (tile_size - 1),
    )
    keep = sigma <= max_sigma
    gaussian_ids, tile = gaussian_ids[keep], tile[keep]

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


def _min_sigma_over_rectangle(
    means2d: torch.Tensor, conics: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor
) -> torch.Tensor:
    """min over the rectangle [lo, hi] of sigma = 1/2 d^T conic d, d = x - mean; all (E, ...) -> (E,).

    Zero when the mean is inside; otherwise the convex quadratic is smallest on an edge, where it
    is a 1D parabola minimised in closed form and clamped to the edge.
    """
    a, b, c = conics.unbind(-1)
    du_lo, du_hi = lo[:, 0] - means2d[:, 0], hi[:, 0] - means2d[:, 0]
    dv_lo, dv_hi = lo[:, 1] - means2d[:, 1], hi[:, 1] - means2d[:, 1]
    best = torch.full_like(a, float("inf"))
    for du in (du_lo, du_hi):  # vertical edges: u fixed, v free
        dv = torch.minimum(torch.maximum(-b * du / c, dv_lo), dv_hi)
        best = torch.minimum(best, 0.5 * (a * du * du + c * dv * dv) + b * du * dv)
    for dv in (dv_lo, dv_hi):  # horizontal edges: v fixed, u free
        du = torch.minimum(torch.maximum(-b * dv / a, du_lo), du_hi)
        best = torch.minimum(best, 0.5 * (a * du * du + c * dv * dv) + b * du * dv)
    inside = (du_lo <= 0) & (du_hi >= 0) & (dv_lo <= 0) & (dv_hi >= 0)
    return torch.where(inside, torch.zeros_like(best), best)
