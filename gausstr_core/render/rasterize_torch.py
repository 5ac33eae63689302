"""Differentiable front-to-back alpha compositing of projected Gaussians in pure PyTorch.

Per pixel, with Gaussians sorted by depth, gsplat's rule: sigma = 1/2 d^T conic d,
alpha = min(0.999, opacity exp(-sigma)); Gaussians with alpha < 1/255 are skipped (gsplat's other
skip, sigma < 0, cannot happen with positive-definite conics); compositing stops before the first
Gaussian after which the transmittance would drop to <= 1e-4. Pixels are processed tile by tile;
tiles with similar Gaussian counts are batched into padded (tiles, pixels, Gaussians) blocks whose
transmittance is a cumulative product. The exponent is a quadratic in tile-centred pixel
coordinates evaluated as one matrix product (float32: ~1e-6 relative error in alpha).
"""

from __future__ import annotations

import numpy as np
import torch

from gausstr_core.render.projection import ALPHA_THRESHOLD
from gausstr_core.render.tiles import TileBins, bin_gaussians

MAX_ALPHA = 0.999
MIN_TRANSMITTANCE = 1e-4
_EMPTY = -1e4  # exponent of padding slots: exp underflows to 0
BLOCK_OVERHEAD = 1 << 16  # per-block operation cost in padded elements (measured on CPU, see _blocks)


def rasterize_torch(
    means2d: torch.Tensor,
    conics: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    depths: torch.Tensor,
    radii: torch.Tensor,
    image_size: tuple[int, int],
    tile_size: int = 8,
    block_elements: int = 1 << 22,
) -> torch.Tensor:
    """Composite I images of G projected Gaussians.

    means2d: (I, G, 2) pixels; conics: (I, G, 3); opacities: (I, G); colors: (I, G, D);
    depths: (I, G) sort keys, m; radii: (I, G, 2) int (0 = culled); image_size (H, W).
    block_elements bounds tiles x pixels x Gaussians per padded block (memory vs. loop count).
    Returns (I, H, W, D + 1) channel-last: channels :D are sum_i w_i c_i, channel D is
    alpha = sum_i w_i (= 1 - final transmittance).
    """
    num_images, _, channels = colors.shape
    height, width = image_size
    bins = bin_gaussians(means2d, conics, opacities, radii, depths, image_size, tile_size)
    basis = _tile_pixel_basis(tile_size, means2d)  # (P, 6)

    table = torch.cat([  # (I * G, 6 + D + 1): one gather per block (index_select's backward sorts its ids)
        means2d.reshape(-1, 2),
        conics.reshape(-1, 3),
        torch.log(opacities.clamp(min=ALPHA_THRESHOLD)).reshape(-1, 1),  # culled below 1/255 anyway
        colors.reshape(-1, channels),
        torch.ones_like(colors.reshape(-1, channels)[:, :1]),
    ], -1)
    blocks, tile_ids = [], [bins.tile_ids[:0]]  # (no tile at all: every pixel takes the zero block)
    for tiles in _blocks(bins, basis.shape[0], block_elements):
        blocks.append(_composite_block(bins, tiles, basis, tile_size, table))  # (T, P, D + 1)
        tile_ids.append(bins.tile_ids[tiles])
    # for pixels no Gaussian reaches; tied to the table's constant ones column (finite, unlike culled
    # means), so that the image always has a grad_fn
    blocks.append(table.new_zeros(1, basis.shape[0], channels + 1) + 0.0 * table[:, -1].sum())
    rows = _pixel_rows(torch.cat(tile_ids), bins, tile_size, num_images, image_size)
    image = torch.cat(blocks).flatten(0, 1).index_select(0, rows)  # gather, no scatter: cheap backward
    return image.unflatten(0, (num_images, height, width))


def _pixel_rows(
    tile_ids: torch.Tensor, bins: TileBins, tile_size: int, num_images: int, image_size: tuple[int, int]
) -> torch.Tensor:
    """(I * H * W,) row of each image pixel in the stacked (T * P) tile outputs; pixels of tiles
    not listed get row T * P (the zero block appended after them)."""
    height, width = image_size
    pixels = tile_size * tile_size
    per_image = bins.tiles_h * bins.tiles_w
    offset = torch.arange(pixels, device=tile_ids.device)
    v = (tile_ids % per_image // bins.tiles_w)[:, None] * tile_size + offset // tile_size  # (T, P)
    u = (tile_ids % bins.tiles_w)[:, None] * tile_size + offset % tile_size
    inside = (v < height) & (u < width)
    target = ((tile_ids // per_image)[:, None] * height + v) * width + u
    rows = torch.full((num_images * height * width,), tile_ids.numel() * pixels, device=tile_ids.device)
    rows[target[inside]] = torch.arange(tile_ids.numel() * pixels, device=tile_ids.device).view_as(target)[inside]
    return rows


def _tile_pixel_basis(tile_size: int, like: torch.Tensor) -> torch.Tensor:
    """(P, 6) monomials [u^2, uv, v^2, u, v, 1] of the pixel centres in tile-centred coordinates."""
    r = torch.arange(tile_size, dtype=like.dtype, device=like.device) + 0.5 - tile_size / 2
    v, u = (x.flatten() for x in torch.meshgrid(r, r, indexing="ij"))
    return torch.stack([u * u, u * v, v * v, u, v, torch.ones_like(u)], -1)


def _blocks(bins: TileBins, num_pixels: int, block_elements: int) -> list[torch.Tensor]:
    """Split the non-empty tiles, most crowded first, into blocks of <= block_elements pairs.

    A block is padded to its first (largest) count, so cutting where counts fall saves padded
    elements, and every block costs a fixed number of operations (about BLOCK_OVERHEAD elements'
    worth on the CPU). Over the distinct counts c_1 > ... > c_V (n_v tiles each), a dynamic
    programme picks the runs of counts that minimise sum(overhead x chunks + pixels x c_first x
    tiles); a run larger than block_elements is cut into chunks of equal size.
    """
    order = torch.argsort(bins.counts, descending=True, stable=True)
    values, tiles_per_value = torch.unique_consecutive(bins.counts[order], return_counts=True)
    values = values.double().numpy(force=True)
    starts = np.concatenate([[0], np.cumsum(tiles_per_value.numpy(force=True))])
    per_chunk = np.maximum(1, block_elements // (num_pixels * values))  # tiles per chunk of a run led by v

    def runs(stop: int) -> tuple[np.ndarray, np.ndarray]:  # chunks and cost of runs first..stop-1, every first
        tiles = starts[stop] - starts[:stop]
        chunks = -(-tiles // per_chunk[:stop])
        return chunks, BLOCK_OVERHEAD * chunks + num_pixels * values[:stop] * tiles

    best, cut = np.zeros(len(values) + 1), np.zeros(len(values) + 1, dtype=np.int64)
    for stop in range(1, len(values) + 1):  # best[stop]: cheapest split of counts 0..stop-1
        total = best[:stop] + runs(stop)[1]
        cut[stop] = int(np.argmin(total))
        best[stop] = total[cut[stop]]
    blocks, stop = [], len(values)
    while stop > 0:
        first = int(cut[stop])
        run = order[int(starts[first]):int(starts[stop])]
        blocks[:0] = list(torch.tensor_split(run, int(runs(stop)[0][first])))
        stop = first
    return blocks


def _composite_block(
    bins: TileBins,
    tiles: torch.Tensor,
    basis: torch.Tensor,
    tile_size: int,
    table: torch.Tensor,
) -> torch.Tensor:
    """Composite the tiles `tiles` (indices into bins); returns (T, P, D + 1) colors and alpha.

    table: (I * G, 6 + D + 1) per flat Gaussian id: means2d (2), conics (3), log opacity, colors, 1.

    The exponent log(opacity) - sigma is a quadratic in the tile-centred pixel coordinates, so
    it is one (P, 6) x (T, 6, K) matrix product.
    """
    counts = bins.counts[tiles]
    slot = torch.arange(int(counts.max()), device=counts.device)
    padded = slot < counts[:, None]  # (T, K)
    entry = (bins.offsets[tiles, None] + slot).clamp(max=bins.gaussian_ids.numel() - 1)
    ids = torch.where(padded, bins.gaussian_ids[entry], torch.zeros_like(entry))  # (T, K)

    tile = bins.tile_ids[tiles] % (bins.tiles_h * bins.tiles_w)
    centre = (torch.stack([tile % bins.tiles_w, tile // bins.tiles_w], -1).to(basis.dtype) + 0.5) * tile_size
    means2d, conics, log_opacities, colors = _take(table, ids).split([2, 3, 1, table.shape[1] - 6], -1)
    mu, mv = (means2d - centre[:, None, :]).unbind(-1)  # (T, K) tile-centred means
    a, b, c = conics.unbind(-1)
    lin_u, lin_v = a * mu + b * mv, b * mu + c * mv
    const = log_opacities[..., 0] - 0.5 * (mu * lin_u + mv * lin_v)
    coef = torch.stack([-0.5 * a, -b, -0.5 * c, lin_u, lin_v, const], 1)  # (T, 6, K)
    empty = coef.new_tensor([0.0, 0, 0, 0, 0, _EMPTY])[:, None]
    coef = torch.where(padded[:, None, :], coef, empty)
    return _Composite.apply(coef, colors, basis)


class _Composite(torch.autograd.Function):
    """(T, 6, K) exponent coefficients, (T, K, C) colors, (P, 6) basis -> (T, P, C) composite.

    alpha = min(0.999, exp(basis @ coef)) where >= 1/255 else 0; T_i = prod_{j<i} (1 - alpha_j)
    (0 from the first Gaussian whose T_{i+1} <= 1e-4 on); out = sum_i alpha_i T_i c_i.
    The backward is the analytic one gsplat uses: dL/dalpha_i = T_i g_i . c_i - S_i / (1 - alpha_i)
    with S_i = sum_{j>i} w_j g_j . c_j, saving only alpha and T (no per-op autograd buffers).
    """

    @staticmethod
    def forward(ctx, coef: torch.Tensor, colors: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        alpha = torch.exp(basis @ coef)  # (T, P, K) opacity * exp(-sigma)
        alpha = alpha.masked_fill_(alpha < ALPHA_THRESHOLD, 0.0).clamp_(max=MAX_ALPHA)
        after = torch.cumprod(1.0 - alpha, dim=-1)  # transmittance after each Gaussian
        before = torch.cat([torch.ones_like(after[..., :1]), after[..., :-1]], -1)  # exclusive: no division
        before.masked_fill_(after <= MIN_TRANSMITTANCE, 0.0)
        ctx.save_for_backward(alpha, before, colors, basis)
        return (alpha * before) @ colors

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        alpha, before, colors, basis = ctx.saved_tensors
        weights = alpha * before
        grad_colors = weights.transpose(1, 2) @ grad_out if ctx.needs_input_grad[1] else None
        if not ctx.needs_input_grad[0]:
            return None, grad_colors, None
        grad_weights = grad_out @ colors.transpose(1, 2)  # (T, P, K)
        weighted = weights.mul_(grad_weights)  # w_i g_i . c_i (weights no longer needed)
        behind = weighted.flip(-1).cumsum(-1).flip(-1).sub_(weighted)  # S_i = sum_{j > i}
        grad_alpha = behind.div_(alpha - 1.0).addcmul_(grad_weights, before)  # T_i g_i . c_i - S_i / (1 - alpha_i)
        grad_exponent = grad_alpha.mul_(alpha.masked_fill(alpha >= MAX_ALPHA, 0.0))  # d alpha / d e
        return basis.transpose(0, 1) @ grad_exponent, grad_colors, None


def _take(values: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """values[ids] for (M, ...) values and (T, K) ids, via index_select (its backward, index_add,
    is much faster on CPU than advanced indexing's accumulating index_put)."""
    return values.index_select(0, ids.flatten()).unflatten(0, ids.shape)
