"""Fused CPU voxeliser kernel (numba JIT): each (voxel, Gaussian) pair is visited once, no buffers.

The kernel behind voxelize.voxelize_gaussians when nothing needs gradients, the tensors are on the
CPU and numba imports (`available()`; numba compiles it on first use and caches it on disk).
voxelize.py holds the semantics, input checks and the covariance regularisation, and passes this
kernel per-Gaussian coefficients (log2 units):

    log2 w_g(v) - log2 opacity_g = q_g(dx, dy) - (s_g dz - c_x dx - c_y dy)^2 <= 0,
    q_g(dx, dy) = q_xx dx^2 + 2 q_xy dx dy + q_yy dy^2   (negative definite),

with d = centre(v) - mean_g, inside the Gaussian's clipped 3-sigma box lo..hi.

Work: the grid's x planes are shared out over the threads (thread t takes planes t, t + T, ..., so a
dense middle does not land on one thread), each thread owning whole planes: no atomics and no
per-thread grids. Per plane and Gaussian only the part of its box where log2(w / opacity) >= cutoff
(-44 in float32, -88 in float64) is visited: the y range solves a quadratic in dy, and each (x, y)
column's weights come from one branch-free loop over its z voxels (zero outside the box and below
the cutoff) with a polynomial exponential that the compiler vectorises (_exp_above_cutoff, relative
error ~2e-7, far below float32 resolution; libm's exp for float64 outputs), computed in float64 with
fused multiply-adds and written as a patch of whole z rows;
the patch is then added to the plane's channel-first
sums (C + 1 rows of Y * Z) with long contiguous loops that the compiler vectorises, and the plane is
normalised (features / max(density, floor)) and transposed into (Y, Z, C) once at the end. A pair
below the cutoff is dropped: such a weight is far below the float32 resolution of any density it
joins, and a voxel reached only by such weights has a density under the feature floor, so both
outputs stay within rounding of the PyTorch path.
"""

from __future__ import annotations

import math
import os
import threading

import numpy as np
import torch

try:  # numba is optional: voxelize.py falls back to its vectorised PyTorch path without it
    import numba
except ImportError:  # pragma: no cover - exercised through available() in the tests
    numba = None

if numba is not None and "NUMBA_THREADING_LAYER" not in os.environ:
    # numba's own thread pool: its OpenMP layer leaves PyTorch's later CPU work 3-5x slower in the same
    # process (benchmarks/voxelize.py's loop reference after the fused kernel: ~2.5 s -> ~11 s).
    numba.config.THREADING_LAYER = "workqueue"
# The workqueue layer runs one parallel kernel at a time: every prange kernel call takes this lock.
PARALLEL_LOCK = threading.Lock()

CUTOFF_LOG2 = {torch.float32: -44.0, torch.float64: -88.0}  # dropped pairs: log2(w / opacity) below this
_LN2 = math.log(2.0)
_NO_ROW = 1 << 62  # "first row" before any row was found
_EXP_TAYLOR = tuple(math.exp(-0.5) / math.factorial(k) for k in range(11))  # e^y around y = -1/2


def available() -> bool:
    """True when numba imported (the fused kernel can run)."""
    return numba is not None


def splat(
    lo: torch.Tensor,
    hi: torch.Tensor,
    means: torch.Tensor,
    tables: torch.Tensor,
    opacities: torch.Tensor,
    features: torch.Tensor,
    origin: tuple[float, float, float],
    size: float,
    dims: tuple[int, int, int],
    feature_floor: float,
    features_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Density (X, Y, Z) and normalised features (X, Y, Z, C) of N Gaussians (CPU tensors, one dtype).

    lo, hi: (N, 3) int64 first / last voxel index of each clipped 3-sigma box (lo > hi: empty);
    means: (N, 3) ego frame, m; tables: (N, 6) q_xx, 2 q_xy, q_yy, s, c_x, c_y in log2 units (see the
    module docstring); opacities: (N,); features: (N, C). origin: the grid's min corner, m; size:
    voxel edge, m; dims: the grid's voxels along x, y, z. features_out: optional contiguous (X, Y, Z, C)
    tensor of the dtype to fill and return as the features (every voxel is written): a buffer reused
    across calls saves the page faults of a fresh grid-sized array (~10 ms for 200x200x16x21 float32).
    Threads: torch.get_num_threads() (capped by numba's pool).
    """
    if numba is None:
        raise RuntimeError("voxelize_fused.splat: numba is not installed")
    dtype = means.dtype
    num_y, num_z = dims[1], dims[2]
    channels = features.shape[1]
    # Zero-initialised (calloc: pages untouched by any Gaussian are never written); the kernel fills the rows
    # of each plane that Gaussians reach.
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    density = torch.from_numpy(np.zeros(dims, dtype=np_dtype))
    if features_out is None:
        weighted, reused = torch.from_numpy(np.zeros((*dims, channels), dtype=np_dtype)), False
    elif (tuple(features_out.shape) != (*dims, channels) or features_out.dtype != dtype
          or features_out.device.type != "cpu" or not features_out.is_contiguous()):
        raise ValueError(f"voxelize_fused.splat: features_out must be a contiguous CPU {dtype} tensor "
                         f"{(*dims, channels)}, got {tuple(features_out.shape)} {features_out.dtype}")
    else:
        weighted, reused = features_out, True
    coef = _column_coefficients(means, tables, opacities, origin, size)
    sources = features.detach().T.contiguous().numpy()  # (C, N): one channel's values are contiguous
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS, dims[0]))
    # Per thread: one plane's channel-first sums (C + 1, Y * Z) and one Gaussian's patch (Y * Z).
    scratch = np.zeros((threads, channels + 2, num_y * num_z), dtype=sources.dtype)
    with PARALLEL_LOCK:
        numba.set_num_threads(threads)
        _splat_kernel(lo.contiguous().numpy(), hi.contiguous().numpy(), coef, sources, float(size),
                      CUTOFF_LOG2[dtype] * _LN2, dtype == torch.float64, float(feature_floor), scratch, reused,
                      density.numpy(), weighted.numpy())
    return density, weighted


def _jit(**options):
    """numba.njit with on-disk caching (identity without numba: the functions are then never called)."""

    def wrap(fn):
        return numba.njit(cache=True, nogil=True, **options)(fn) if numba is not None else fn

    return wrap


@_jit()
def _exp_neg(x):
    """exp(x) for x <= 0 without a libm call (vectorisable): exp(x / 128)^128, the inner one by its
    degree-10 Taylor series on [-1, 0] (relative error ~1e-11, ~1e-9 after the squarings); 0 below -128."""
    y = max(x, -128.0) / 128.0 + 0.5
    c = _EXP_TAYLOR
    r = c[0] + y * (c[1] + y * (c[2] + y * (c[3] + y * (c[4] + y * (c[5] + y * (c[6] + y * (c[7] + y * (
        c[8] + y * (c[9] + y * c[10])))))))))
    for _ in range(7):
        r = r * r
    return r if x > -128.0 else 0.0


@_jit(fastmath={"contract"})
def _exp_above_cutoff(x):
    """exp(x) for -32 <= x <= 0 (the float32 kernel's weights: cutoff -44 log2 = -30.5), vectorisable:
    exp(x / 32)^32, the inner one by its degree-8 Taylor series around -1/2 (relative error ~2e-7)."""
    y = x * (1.0 / 32.0) + 0.5
    c = _EXP_TAYLOR
    r = c[0] + y * (c[1] + y * (c[2] + y * (c[3] + y * (c[4] + y * (c[5] + y * (c[6] + y * (c[7] + y * c[8])))))))
    for _ in range(5):
        r = r * r
    return r


@_jit(parallel=True, fastmath={"contract"})
def _splat_kernel(lo, hi, coef, sources, size, cutoff, exact, floor, scratch, clear, density, weighted):
    """numba kernel: fills density (X, Y, Z) and weighted (X, Y, Z, C) in place (see splat).

    Thread t handles planes t, t + T, ... (T = scratch.shape[0]): every region of the grid is spread
    over all threads. Per plane, each Gaussian's weights are written as a patch of whole z rows
    (zero outside the column's z range), then added to the plane's channel-first sums with long
    contiguous loops (vectorised), and the rows that Gaussians reached are normalised and transposed
    into (Y, Z, C) once at the end (zero-initialised outputs keep their zeros elsewhere; with `clear`,
    a reused features buffer, each plane is zeroed first); the scratch sums (zero on entry) are zeroed
    again over those rows only.
    """
    num_x, num_y, num_z = density.shape
    channels = sources.shape[0]
    num = coef.shape[0]
    threads = scratch.shape[0]
    for t in numba.prange(threads):
        sums = scratch[t, :channels + 1]  # rows 0..C-1: weighted features, row C: density
        patch = scratch[t, channels + 1]
        for x in range(t, num_x, threads):
            if clear:
                weighted[x].reshape(num_y * num_z * channels)[:] = 0
            plane_first, plane_last = _NO_ROW, -1  # rows of the plane that some Gaussian reaches
            for g in range(num):
                if x < lo[g, 0] or x > hi[g, 0]:
                    continue
                first, last = _gaussian_patch(g, x, lo, hi, coef, size, cutoff, exact, num_z, patch)
                if first > last:
                    continue
                plane_first, plane_last = min(plane_first, first), max(plane_last, last)
                start, stop = first * num_z, (last + 1) * num_z
                part = patch[start:stop]
                target = sums[channels, start:stop]
                for j in range(stop - start):
                    target[j] += part[j]
                for ch in range(channels):
                    value = sources[ch, g]
                    target = sums[ch, start:stop]
                    for j in range(stop - start):
                        target[j] += value * part[j]
            if plane_first > plane_last:
                continue  # nothing here: the outputs' zeros stand
            begin, end = plane_first * num_z, (plane_last + 1) * num_z
            plane_density = sums[channels]
            inverse = patch  # free again: 1 / max(density, floor) of the plane's voxels
            for v in range(begin, end):
                inverse[v] = 1.0 / max(plane_density[v], floor)
            density[x].reshape(num_y * num_z)[begin:end] = plane_density[begin:end]
            plane = weighted[x].reshape(num_y * num_z, channels)
            for v in range(begin, end):
                if plane_density[v] > 0:
                    row = plane[v]
                    scale = inverse[v]
                    for ch in range(channels):
                        row[ch] = sums[ch, v] * scale
            for ch in range(channels + 1):  # the scratch sums start the next plane at zero
                sums[ch, begin:end] = 0


def _column_coefficients(
    means: torch.Tensor,
    tables: torch.Tensor,
    opacities: torch.Tensor,
    origin: tuple[float, float, float],
    size: float,
) -> np.ndarray:
    """Per-Gaussian float64 constants of the kernel, natural-log units (see _gaussian_patch): coef (N, 11)
    q_xx, 2 q_xy, q_yy, s, c_x, c_y, mean - origin (3), opacity, step = s * size."""
    t = tables.detach().double()
    root = math.sqrt(_LN2)
    q_xx, q_xy2, q_yy = t[:, 0] * _LN2, t[:, 1] * _LN2, t[:, 2] * _LN2
    s, c_x, c_y = t[:, 3] * root, t[:, 4] * root, t[:, 5] * root
    rel = means.detach().double() - means.new_tensor(origin, dtype=torch.float64)
    step = s * size
    opacity = opacities.detach().double()
    columns = [q_xx, q_xy2, q_yy, s, c_x, c_y, rel[:, 0], rel[:, 1], rel[:, 2], opacity, step]
    return torch.stack(columns, -1).contiguous().numpy()


@_jit(fastmath={"contract"})
def _gaussian_patch(g, x, lo, hi, coef, size, cutoff, exact, num_z, patch):
    """Weights of Gaussian g on plane x into patch (Y * Z,), voxel (y, k) at y * Z + k.

    coef (N, 11): from _column_coefficients. Rows of the (cut) y range are written whole (zeros outside the
    box's z range and where the weight is below the cutoff). Returns (first, last): the rows holding a
    weight (first > last: none).
    """
    q_xx, q_xy2, q_yy, s, c_x, c_y = coef[g, 0], coef[g, 1], coef[g, 2], coef[g, 3], coef[g, 4], coef[g, 5]
    rel_x, rel_y, rel_z, opacity, step = coef[g, 6], coef[g, 7], coef[g, 8], coef[g, 9], coef[g, 10]
    inv_size = 1.0 / size
    dx = (x + 0.5) * size - rel_x
    q_x, q_xy, centre_x = q_xx * dx * dx, q_xy2 * dx, c_x * dx
    # y range: q(dx, dy) >= cutoff, i.e. q_yy dy^2 + q_xy dy + (q_x - cutoff) >= 0 with q_yy < 0.
    y_lo, y_hi = lo[g, 1], hi[g, 1]
    if q_yy < 0:
        disc = q_xy * q_xy - 4 * q_yy * (q_x - cutoff)
        if disc < 0:
            return _NO_ROW, -1
        root = math.sqrt(disc)
        lowest = (rel_y + (-q_xy + root) / (2 * q_yy)) * inv_size - 0.5
        highest = (rel_y + (-q_xy - root) / (2 * q_yy)) * inv_size - 0.5
        y_lo = max(y_lo, int(math.ceil(max(lowest, y_lo - 1.0))))
        y_hi = min(y_hi, int(math.floor(min(highest, y_hi + 1.0))))
    u_base = step * 0.5 - s * rel_z
    z_lo, z_hi = lo[g, 2], hi[g, 2]
    first, last = _NO_ROW, -1
    for y in range(y_lo, y_hi + 1):
        base = y * num_z
        dy = (y + 0.5) * size - rel_y
        q = min(q_x + q_xy * dy + q_yy * dy * dy, 0.0)
        if q < cutoff:
            for k in range(num_z):
                patch[base + k] = 0
            continue
        first, last = min(first, y), y
        # ln(w_k / opacity) = q - (s dz_k - centre_z)^2 = q - (k step + u_0)^2, dz_k = (k + 0.5) size - rel_z:
        # one branch-free loop over the column (vectorised, exp included), zero outside the box and below cutoff.
        u_0 = u_base - centre_x - c_y * dy
        for k in range(num_z):
            u = k * step + u_0
            exponent = q - u * u
            inside = exponent >= cutoff and k >= z_lo and k <= z_hi
            weight = math.exp(exponent) if exact else _exp_above_cutoff(exponent)
            patch[base + k] = opacity * weight if inside else 0.0
    return first, last
