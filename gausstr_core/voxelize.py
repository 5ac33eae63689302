"""Gaussians -> density and density-weighted features on a voxel grid (vectorised, chunked).

Semantics (the authors' voxeliser, docs/model_and_data_facts.md section 1, inference): Gaussian g adds

    w_g(v) = opacity_g * exp(-1/2 d^T Sigma_g^-1 d),   d = centre(v) - mean_g,

to every voxel v of its 3-sigma axis-aligned box, sigma = sqrt(diag Sigma_g), clipped to the grid.
Along each axis voxel i belongs to the box when
floor((mean - 3 sigma - min) / size) <= i <= floor((mean + 3 sigma - min) / size), i.e. its cell
touches [mean - 3 sigma, mean + 3 sigma]. density(v) = sum_g w_g(v) and
features(v) = sum_g w_g(v) f_g / max(density(v), 1e-6).

Near-singular covariances are regularised, never skipped: every Gaussian uses
Sigma + (eps + 1e-5 * mean(diag Sigma)) I for its box and its Mahalanobis distance (eps = 1e-6 m^2
by default, a 1 mm standard deviation; the relative term absorbs float32 rounding of large flat
Gaussians), and the log-weight is evaluated as a sum of two terms that are each <= 0 (below), so a
weight never exceeds the opacity and nothing becomes NaN or inf. A covariance still not positive
definite after that is bad input (ValueError).

Algorithm (no Python loop over Gaussians): the grid is cut into tiles of TILE voxels. Every
(tile, Gaussian) pair whose box touches the tile becomes one slot of a work unit (one tile, up to
`chunk_size / voxels-per-tile` Gaussians). With P = -1/2 log2(e) Sigma^-1 the log-weight splits
exactly into log2 w = q(dx, dy) - (s dz - c_x dx - c_y dy)^2 (Schur complement of the z row: q <= 0
on its own, the second term is the conditional profile along z), so over a tile it is built from
(x, y) tables and a z vector; the only per-(voxel, Gaussian) work is a subtraction, an addcmul,
exp2 and two batched matrix products (features^T @ weights, opacities^T @ weights) that sum over
the unit's Gaussians. Units are grouped by size (largest first) into chunks of at most
`chunk_size` (voxel, Gaussian) evaluations to bound memory; without autograd the chunks reuse
scratch buffers. Identical code on CPU and CUDA; differentiable w.r.t. means, covariances,
opacities and features (the box bounds themselves are piecewise constant). Unit results are summed
into the grid, seen as rows of TILE[2] voxels along z, with index_add_: deterministic on CPU; on
CUDA only tiles split over several units (more than chunk_size / voxels-per-tile Gaussians) need
torch.use_deterministic_algorithms(True).

Without autograd on the CPU, when numba is installed, the same per-Gaussian coefficients go to the
fused kernel of voxelize_fused instead (one pass, parallel over x planes; `backend` selects).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from gausstr_core import voxelize_fused
from gausstr_core.grid import VoxelGrid

TILE = (8, 8, 16)  # voxels per tile along x, y, z (clipped to the grid)
DEFAULT_CHUNK_SIZE = 1 << 20  # (voxel, Gaussian) evaluations per chunk: 4 MB per float32 buffer (cache-friendly)
DEFAULT_EPS = 1e-6  # m^2 added to every covariance diagonal
RELATIVE_EPS = 1e-5  # times the mean variance, also added to the diagonal
FEATURE_EPS = 1e-6  # density floor when normalising features
_MASKED = -1e30  # log2-weight of voxels outside a Gaussian's box (finite: keeps gradients NaN-free)
_MASKED_Z = 1e15  # scaled z offset outside the box: its square is a finite, huge penalty
_NEG_HALF_LOG2E = -0.5 / math.log(2.0)


def filter_gaussians(
    means: torch.Tensor,
    covariances: torch.Tensor,
    opacities: torch.Tensor,
    grid: VoxelGrid,
    min_opacity: float,
    min_extent: float,
) -> torch.Tensor:
    """Talk2DINO-config Gaussian filter (an explicit step; off unless the config asks for it).

    means (N, 3) ego frame, m; covariances (N, 3, 3) m^2; opacities (N,).
    Returns (N,) bool: opacity > min_opacity, mean inside the grid volume (VoxelGrid.contains), and
    6 * min(diag Sigma) > min_extent (m^2).
    """
    _check_gaussians(means, covariances, opacities, None)
    smallest = torch.diagonal(covariances, dim1=-2, dim2=-1).amin(dim=-1)
    return (opacities > min_opacity) & grid.contains(means) & (6 * smallest > min_extent)


def voxelize_gaussians(
    means: torch.Tensor,
    covariances: torch.Tensor,
    opacities: torch.Tensor,
    features: torch.Tensor,
    grid: VoxelGrid,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    eps: float = DEFAULT_EPS,
    backend: str = "auto",
    features_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Splat Gaussians into `grid` (module docstring gives the exact semantics).

    means (N, 3) ego frame, m; covariances (N, 3, 3) ego frame, m^2; opacities (N,); features (N, C).
    chunk_size bounds the (voxel, Gaussian) evaluations held at once by the PyTorch path (memory
    ~ 16 bytes each, more under autograd). Computes in float32, or float64 when the means are float64.
    backend: "torch" (the vectorised path above: any device, differentiable), "fused" (the numba CPU
    kernel of voxelize_fused: CPU, no gradients, numba installed) or "auto" (fused when it can run).
    features_out: optional (X, Y, Z, C) tensor of the computed dtype on the Gaussians' device, filled and
    returned as the features (old contents ignored): a buffer reused across calls, as OpenVocabularyHead
    does, spares the page faults of a fresh grid-sized array.
    Returns density (X, Y, Z) and features (X, Y, Z, C), indexed [x, y, z].
    """
    _check_gaussians(means, covariances, opacities, features)
    if chunk_size < 1:
        raise ValueError(f"voxelize_gaussians: chunk_size must be positive, got {chunk_size}")
    if eps < 0:
        raise ValueError(f"voxelize_gaussians: eps must be >= 0, got {eps}")
    differentiable = torch.is_grad_enabled() and any(t.requires_grad for t in (means, covariances, opacities, features))
    fused = _use_fused(backend, differentiable, means.device)
    dtype = torch.float64 if means.dtype == torch.float64 else torch.float32
    device = means.device
    dims = grid.dims
    num, channels = features.shape
    tile = tuple(min(t, d) for t, d in zip(TILE, dims))
    tiles_per_axis = tuple(-(-d // t) for d, t in zip(dims, tile))
    tile_voxels = math.prod(tile)

    means = means.to(dtype)
    covariances = covariances.to(dtype)
    jitter = eps + RELATIVE_EPS * torch.diagonal(covariances, dim1=-2, dim2=-1).mean(-1)
    covariances = covariances + jitter[:, None, None] * torch.eye(3, dtype=dtype, device=device)
    chol, info = torch.linalg.cholesky_ex(covariances.double())
    if bool((info != 0).any()):
        bad = torch.nonzero(info != 0).flatten()[:5].tolist()
        raise ValueError(f"voxelize_gaussians: covariances {bad} are not positive semi-definite")
    precisions = torch.cholesky_inverse(chol) * _NEG_HALF_LOG2E  # float64; log2-weight = d^T P d
    tables = _conditional_tables(precisions).to(dtype)  # (N, 6): Schur xx, xy, yy; s; c_x, c_y
    lo, hi = _box_indices(means.detach(), covariances.detach(), grid)
    if fused:
        opacities, features = opacities.to(dtype), features.to(dtype)
        origin = grid.min_corner
        return voxelize_fused.splat(lo, hi, means, tables, opacities, features, origin, grid.size, dims, FEATURE_EPS,
                                    features_out)
    # Row `num` is a padding Gaussian: empty box, zero weight.
    pad = torch.tensor([[1, 1, 1]], dtype=torch.long, device=device)
    lo, hi = torch.cat([lo, pad]), torch.cat([hi, pad - 1])
    means = torch.cat([means, means.new_zeros(1, 3)])
    tables = torch.cat([tables, tables.new_tensor([[-1.0, 0.0, -1.0, 1.0, 0.0, 0.0]])])
    opacities = torch.cat([opacities.to(dtype), opacities.new_zeros(1, dtype=dtype)])
    sources = opacities[:, None] * torch.cat([features.to(dtype), features.new_zeros(1, channels, dtype=dtype)])

    budget = max(1, chunk_size // tile_voxels)
    units = _plan_units(lo[:num], hi[:num], tile, tiles_per_axis, budget)
    (nx, ny, nz), (tx, ty, tz) = tiles_per_axis, tile
    padded = (nx * tx, ny * ty, nz * tz)
    # Grids padded to whole tiles, seen as rows of tz voxels along z: row ((x * Y + y) * nz + z // tz).
    weighted = means.new_zeros(*padded, channels)
    density = means.new_zeros(padded)
    weighted_rows, density_rows = weighted.view(-1, tz, channels), density.view(-1, tz)
    # Without autograd every chunk reuses scratch buffers (fresh large buffers cost page faults).
    scratch_size = max(budget, channels + 1) * tile_voxels
    scratch = None if differentiable else [means.new_empty(scratch_size) for _ in range(3)]

    def buffer(index: int, shape: tuple[int, ...]) -> torch.Tensor | None:
        return None if scratch is None else scratch[index][: math.prod(shape)].view(shape)

    tile_coords = _tile_coords(tiles_per_axis, device)
    for tiles, slots in _chunks(units, num, budget, channels + 1):
        coords = tile_coords[tiles]  # (U, 3) tile index along x, y, z
        units_here = slots.shape[0]
        out = buffer(0, (*slots.shape, tx * ty, tz))
        weights = _tile_weights(coords, tile, grid, means[slots], tables[slots], lo[slots], hi[slots], out)
        weights = weights.flatten(2)  # (U, K, tile voxels)
        # Channels-first product (the fast layout), then one small transpose into the grid's layout.
        contrib = torch.bmm(sources[slots].transpose(1, 2), weights, out=buffer(1, (units_here, channels, tile_voxels)))
        contrib_last = buffer(2, (units_here, tile_voxels, channels))
        contrib_last = contrib.transpose(1, 2).contiguous() if contrib_last is None else contrib_last.copy_(contrib.mT)
        column = (coords[:, 0, None, None] * tx + torch.arange(tx, device=device)[:, None]) * padded[1]
        column = column + coords[:, 1, None, None] * ty + torch.arange(ty, device=device)
        rows = (column * nz + coords[:, 2, None, None]).flatten()  # the U tiles' rows, x-major
        weighted_rows.index_add_(0, rows, contrib_last.view(-1, tz, channels))
        density_rows.index_add_(0, rows, torch.bmm(opacities[slots][:, None], weights).view(-1, tz))

    floor = density.clamp(min=FEATURE_EPS)[..., None]
    # In place when nothing needs gradients: saves a second grid-sized buffer.
    features = weighted / floor if differentiable else weighted.div_(floor)
    if padded != dims:
        crop = tuple(slice(0, d) for d in dims)
        density, features = density[crop].contiguous(), features[crop].contiguous()
    return density, (features if features_out is None else features_out.copy_(features))


def _use_fused(backend: str, differentiable: bool, device: torch.device) -> bool:
    """Whether `backend` selects the fused kernel for this call (errors name what rules it out)."""
    if backend not in ("auto", "fused", "torch"):
        raise ValueError(f"voxelize_gaussians: backend must be 'auto', 'fused' or 'torch', got {backend!r}")
    reasons = [
        why
        for why, applies in (
            ("numba is not installed", not voxelize_fused.available()),
            ("gradients are required", differentiable),
            (f"the tensors are on {device}, not the CPU", device.type != "cpu"),
        )
        if applies
    ]
    if backend == "fused" and reasons:
        raise ValueError(f"voxelize_gaussians: the fused backend cannot run: {'; '.join(reasons)}")
    return backend != "torch" and not reasons


def _conditional_tables(precisions: torch.Tensor) -> torch.Tensor:
    """Per-Gaussian coefficients of d^T P d = q(dx, dy) - (s dz - c_x dx - c_y dy)^2.

    precisions (N, 3, 3) negative definite. q is the Schur-complement form of (dx, dy) (<= 0) and
    the second term the conditional 1D profile along z (<= 0), so no cancellation can make a
    log-weight positive. Returns (N, 6): q_xx, 2 q_xy, q_yy, s = sqrt(-P_zz), c_x, c_y.
    """
    p = precisions
    s = (-p[:, 2, 2]).sqrt()
    c_x, c_y = p[:, 0, 2] / s, p[:, 1, 2] / s
    q_xx = p[:, 0, 0] + c_x * c_x
    q_xy = p[:, 0, 1] + c_x * c_y
    q_yy = p[:, 1, 1] + c_y * c_y
    return torch.stack([q_xx, 2 * q_xy, q_yy, s, c_x, c_y], -1)


def _tile_weights(
    coords: torch.Tensor,
    tile: tuple[int, int, int],
    grid: VoxelGrid,
    means: torch.Tensor,
    tables: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    out: torch.Tensor | None,
) -> torch.Tensor:
    """exp(-1/2 d^T Sigma^-1 d) of K Gaussians over each of U tiles, 0 outside their boxes.

    coords (U, 3) tile indices; means (U, K, 3); tables (U, K, 6) from _conditional_tables;
    lo, hi (U, K, 3) box voxel indices; out: optional (U, K, tx * ty, tz) buffer to write into.
    Returns (U, K, tx * ty, tz), tile-local voxel order (x, y, z).
    """
    deltas, inside = [], []
    for a in range(3):
        index = coords[:, a, None] * tile[a] + torch.arange(tile[a], device=coords.device)  # (U, t_a)
        centre = grid.min_corner[a] + (index.to(means.dtype) + 0.5) * grid.size
        deltas.append(centre[:, None, :] - means[..., a, None])  # (U, K, t_a)
        inside.append((index[:, None] >= lo[..., a, None]) & (index[:, None] <= hi[..., a, None]))
    (dx, dy, dz), (q_xx, q_xy2, q_yy, s, c_x, c_y) = deltas, tables[..., None].unbind(-2)  # (U, K, t_a), (U, K, 1)
    # q[x, y] (masked outside the xy box) and s times the conditional mean of dz, both (U, K, tx * ty).
    q_x = torch.where(inside[0], q_xx * dx * dx, _MASKED)[..., :, None]
    q_y = torch.where(inside[1], q_yy * dy * dy, _MASKED)[..., None, :]
    q = torch.addcmul(q_x + q_y, (q_xy2 * dx)[..., :, None], dy[..., None, :]).clamp_(max=0).flatten(-2)
    centre_z = ((c_x * dx)[..., :, None] + (c_y * dy)[..., None, :]).flatten(-2)
    scaled_dz = torch.where(inside[2], s * dz, _MASKED_Z)  # (U, K, tz)
    # log2 w = q - (s dz - centre_z)^2: one subtraction, one addcmul and exp2 per (voxel, Gaussian).
    offset = torch.sub(scaled_dz[..., None, :], centre_z[..., None], out=out)
    return torch.addcmul(q[..., None], offset, offset, value=-1, out=out).exp2_()


def _check_gaussians(
    means: torch.Tensor, covariances: torch.Tensor, opacities: torch.Tensor, features: torch.Tensor | None
) -> None:
    num = means.shape[0] if means.ndim == 2 else -1
    expected = {"means": "(N, 3)", "covariances": "(N, 3, 3)", "opacities": "(N,)", "features": "(N, C)"}
    tensors = {"means": means, "covariances": covariances, "opacities": opacities, "features": features}
    for name, tensor in tensors.items():
        if tensor is None:
            continue
        shape = tuple(tensor.shape)
        valid = {
            "means": len(shape) == 2 and shape[1:] == (3,),
            "covariances": shape == (num, 3, 3),
            "opacities": shape == (num,),
            "features": len(shape) == 2 and shape[0] == num,
        }[name]
        if not valid:
            raise ValueError(f"voxelize: {name} must have shape {expected[name]} (N = {num} from means), got {shape}")
        if not tensor.is_floating_point():
            raise ValueError(f"voxelize: {name} must be a floating-point tensor, got {tensor.dtype}")
        if tensor.device != means.device:
            raise ValueError(f"voxelize: {name} is on {tensor.device}, means on {means.device}")
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"voxelize: {name} contains NaN or inf")


def _box_indices(means: torch.Tensor, covariances: torch.Tensor, grid: VoxelGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last voxel index (N, 3) of each 3-sigma box, clipped to the grid (lo > hi: empty)."""
    sigma = torch.diagonal(covariances, dim1=-2, dim2=-1).sqrt()
    origin = means.new_tensor(grid.min_corner)
    last = means.new_tensor(grid.dims) - 1
    lo = torch.minimum(torch.floor((means - 3 * sigma - origin) / grid.size).clamp(min=0), last + 1)
    hi = torch.minimum(torch.floor((means + 3 * sigma - origin) / grid.size), last).clamp(min=-1)
    return lo.long(), hi.long()


def _tile_coords(tiles_per_axis: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """(num_tiles, 3) tile index along x, y, z of every tile id (x-major numbering)."""
    ranges = [torch.arange(n, device=device) for n in tiles_per_axis]
    return torch.stack(torch.meshgrid(*ranges, indexing="ij"), -1).reshape(-1, 3)


@dataclass
class _Units:
    """Work units: unit i is tile `tile[i]` with Gaussians gaussian[start[i] : start[i] + size[i]]."""

    gaussian: torch.Tensor  # (pairs,) Gaussian index of every (tile, Gaussian) pair, grouped by unit
    start: torch.Tensor  # (U,)
    size: torch.Tensor  # (U,)
    tile: torch.Tensor  # (U,)


def _plan_units(
    lo: torch.Tensor, hi: torch.Tensor, tile: tuple[int, int, int], tiles_per_axis: tuple[int, int, int], capacity: int
) -> _Units:
    """Split all (tile, Gaussian) pairs (box lo..hi (N, 3) touches the tile) into units of <= capacity."""
    device = lo.device
    size = torch.tensor(tile, device=device)
    first, last = lo // size, hi // size
    extent = torch.where((lo <= hi).all(-1, keepdim=True), last - first + 1, 0)
    counts = extent.prod(-1)
    gaussian = torch.repeat_interleave(torch.arange(lo.shape[0], device=device), counts)
    local = torch.arange(gaussian.numel(), device=device) - (torch.cumsum(counts, 0) - counts)[gaussian]
    ext = extent[gaussian]
    offset = torch.stack([local // (ext[:, 1] * ext[:, 2]), local // ext[:, 2] % ext[:, 1], local % ext[:, 2]], -1)
    cell = first[gaussian] + offset
    nx, ny, nz = tiles_per_axis
    tile_id = (cell[:, 0] * ny + cell[:, 1]) * nz + cell[:, 2]
    order = torch.argsort(tile_id, stable=True)
    tile_id, gaussian = tile_id[order], gaussian[order]
    per_tile = torch.bincount(tile_id, minlength=nx * ny * nz)
    rank = torch.arange(tile_id.numel(), device=device) - (torch.cumsum(per_tile, 0) - per_tile)[tile_id]
    max_units = -(-lo.shape[0] // capacity) + 1
    _, size = torch.unique_consecutive(tile_id * max_units + rank // capacity, return_counts=True)
    start = torch.cumsum(size, 0) - size
    return _Units(gaussian=gaussian, start=start, size=size, tile=tile_id[start])


def _chunks(
    units: _Units, pad_index: int, budget: int, min_width: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (tiles (U,), slots (U, K)) per chunk: units sorted by size, U * max(K, min_width) <= budget.

    Slots hold Gaussian indices; unused slots hold `pad_index` (the padding Gaussian).
    """
    gaussian = units.gaussian
    if units.size.numel() == 0:
        return
    order = torch.argsort(units.size, descending=True, stable=True)
    sizes = units.size[order].tolist()
    budget = max(1, budget)
    begin = 0
    while begin < len(sizes):
        width = sizes[begin]
        end = min(len(sizes), begin + max(1, budget // max(width, min_width)))
        chosen = order[begin:end]
        slot = torch.arange(width, device=gaussian.device)
        index = units.start[chosen, None] + slot
        valid = slot < units.size[chosen, None]
        yield units.tile[chosen], torch.where(valid, gaussian[index.clamp(max=gaussian.numel() - 1)], pad_index)
        begin = end
