"""Fused CPU voxeliser: each (voxel, Gaussian) pair is visited once, nothing grid-sized but the outputs.

The kernel behind voxelize.voxelize_gaussians when nothing needs gradients, the tensors are on the
CPU and numba imports (`available()`). `splat` runs the C++ kernel (gausstr_core/csrc/splat_cpu.cpp,
built by voxelize_native) for float32 grids of up to 32 channels when it is built, and the numba
kernel of this module otherwise (float64, more channels, no compiler; numba compiles it on first use
and caches it on disk). voxelize.py holds the semantics, input checks and the covariance
regularisation, and passes the kernels per-Gaussian coefficients (log2 units):

    log2 w_g(v) - log2 opacity_g = q_g(dx, dy) - (s_g dz - c_x dx - c_y dy)^2 <= 0,
    q_g(dx, dy) = q_xx dx^2 + 2 q_xy dx dy + q_yy dy^2   (negative definite),

with d = centre(v) - mean_g, inside the Gaussian's clipped 3-sigma box lo..hi.

Work, both kernels: the grid's x planes are shared out over the threads (thread t takes planes t,
t + T, ..., so a dense middle does not land on one thread), each thread owning whole planes: no
atomics and no per-thread grids. Per plane and Gaussian only the part of its box where
log2(w / opacity) >= cutoff (-44 in float32, -88 in float64) is visited: the y range solves a
quadratic in dy (_row_range), and each (x, y) column's weights come from one branch-free loop over
its z voxels (zero outside the box and below the cutoff) with a polynomial exponential that the
compiler vectorises. The C++ kernel then adds each column's weights times the C + 1 channels
(features, density) into accumulators held in registers (docs in its source). The numba kernel
sweeps each plane in blocks of BLOCK_ROWS rows whose channel-first sums stay in the L1 cache:
GROUP Gaussians' weights are written as patches of whole z rows (four rows at a time: independent
dependency chains for the exponential, _exp_above_cutoff, relative error ~2e-7; libm's exp for
float64 outputs) and added to the sums in one pass, and each block is normalised (features /
max(density, floor)) and transposed into (Y, Z, C). A pair below the cutoff is dropped: such a
weight is far below the float32 resolution of any density it joins, and a voxel reached only by
such weights has a density under the feature floor, so both outputs stay within rounding of the
PyTorch path.
"""

from __future__ import annotations

import math
import os
import threading

import numpy as np
import torch

from gausstr_core import huge_pages, voxelize_native

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
# float32 constants of _exp_above_cutoff: float32 arguments stay in float32 lanes
_EXP_TAYLOR_32 = tuple(np.float32(c) for c in _EXP_TAYLOR[:9])
_INV_32, _HALF = np.float32(1 / 32), np.float32(0.5)
BLOCK_ROWS = 16  # rows per block of the plane sweep: (C + 1) x 16 x Z sums fit the L1 cache
GROUP = 4  # Gaussians whose patches are added to the sums in one pass


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
    across calls saves the first-touch cost of a fresh grid-sized array (huge_pages.zeros: ~4 ms for
    200x200x16x18 float32 on huge pages, ~20 ms on 4 KiB pages).
    Threads: torch.get_num_threads() (the numba kernel's capped by numba's pool). Kernel: the C++ one for
    float32 and C <= voxelize_native.max_channels() when it is built, else numba's (see the module docstring).
    """
    if numba is None:
        raise RuntimeError("voxelize_fused.splat: numba is not installed")
    dtype = means.dtype
    num_z = dims[2]
    channels = features.shape[1]
    # Zero-initialised (pages untouched by any Gaussian are never written; large outputs on huge pages); the
    # kernel fills the rows of each plane that Gaussians reach.
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    density = torch.from_numpy(huge_pages.zeros(dims, np_dtype))
    if features_out is None:
        weighted, reused = torch.from_numpy(huge_pages.zeros((*dims, channels), np_dtype)), False
    elif (tuple(features_out.shape) != (*dims, channels) or features_out.dtype != dtype
          or features_out.device.type != "cpu" or not features_out.is_contiguous()):
        raise ValueError(f"voxelize_fused.splat: features_out must be a contiguous CPU {dtype} tensor "
                         f"{(*dims, channels)}, got {tuple(features_out.shape)} {features_out.dtype}")
    else:
        weighted, reused = features_out, True
    coef = _column_coefficients(means, tables, opacities, origin, size)
    # (N, C + 1): the features and a column of ones (the density channel)
    sources = torch.cat([features.detach(), features.new_ones(features.shape[0], 1)], dim=1)
    native = voxelize_native.module() if dtype == torch.float32 else None
    if native is not None and channels <= native.max_channels:
        native.splat(lo.contiguous().numpy(), hi.contiguous().numpy(), coef, sources.contiguous().numpy(),
                     float(size), CUTOFF_LOG2[dtype] * _LN2, float(feature_floor), reused,
                     max(1, torch.get_num_threads()), density.numpy(), weighted.numpy())
        return density, weighted
    sources = sources.T.contiguous().numpy()  # (C + 1, N): one channel's values are contiguous
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS, dims[0]))
    # Per thread: one block's channel-first sums (C + 1, BLOCK_ROWS * Z), GROUP Gaussians' patches there (three
    # rows more: _gaussian_patch writes four at a time), and the (Gaussian, first row, last row) of the Gaussians
    # reaching the current plane.
    scratch = np.zeros((threads, channels + 1, BLOCK_ROWS * num_z), dtype=sources.dtype)
    patches = np.empty((threads, GROUP, (BLOCK_ROWS + 3) * num_z), dtype=sources.dtype)
    spans = np.empty((threads, max(1, means.shape[0]), 3), dtype=np.int64)
    with PARALLEL_LOCK:
        numba.set_num_threads(threads)
        _splat_kernel(lo.contiguous().numpy(), hi.contiguous().numpy(), coef, sources, float(size),
                      CUTOFF_LOG2[dtype] * _LN2, float(feature_floor), scratch, patches, spans, reused,
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
    """exp(x) for -32 <= x <= 0 (the float32 kernel's weights: cutoff -44 log2 = -30.5), vectorisable, in
    x's precision for float32: exp(x / 32)^32, the inner one by its degree-8 Taylor series around -1/2
    (series error ~2e-7 relative; float32 rounding in the squarings adds up to ~32 ulps)."""
    y = x * _INV_32 + _HALF
    c = _EXP_TAYLOR_32
    r = c[0] + y * (c[1] + y * (c[2] + y * (c[3] + y * (c[4] + y * (c[5] + y * (c[6] + y * (c[7] + y * c[8])))))))
    for _ in range(5):
        r = r * r
    return r


@_jit(parallel=True, fastmath={"contract"})
def _splat_kernel(lo, hi, coef, sources, size, cutoff, floor, scratch, patches, spans, clear, density,
                  weighted):
    """numba kernel: fills density (X, Y, Z) and weighted (X, Y, Z, C) in place (see splat).

    Thread t handles planes t, t + T, ... (T = scratch.shape[0]): every region of the grid is spread
    over all threads. Per plane, the y range of every Gaussian reaching it goes into spans[t]; then
    the plane is swept in blocks of BLOCK_ROWS rows whose channel-first sums scratch[t] (C + 1,
    BLOCK_ROWS * Z) stay in the L1 cache: per block, the weights of GROUP Gaussians at a time on
    their rows there are written as patches of whole z rows (patches[t], zero outside each column's z
    range) and added to the sums in one pass (one load and store of the sums per GROUP Gaussians), and
    the block is normalised and transposed into (Y, Z, C) (zero-initialised outputs keep their zeros
    elsewhere; with `clear`, a reused features buffer, each plane is zeroed first); the sums are zeroed
    again over the rows used. sources: (C + 1, N), the features and a row of ones (the density).
    """
    num_x, num_y, num_z = density.shape
    num = coef.shape[0]
    threads = scratch.shape[0]
    for t in numba.prange(threads):
        sums = scratch[t]
        reach = spans[t]  # (N, 3): Gaussian, first row, last row of the Gaussians reaching the plane
        members = np.empty((GROUP, 3), dtype=np.int64)  # the Gaussians of the current group, as reach
        lanes = np.empty((2, num_z), dtype=scratch.dtype)  # _gaussian_patch's per-z k and box opacity
        for k in range(num_z):
            lanes[0, k] = k
        for x in range(t, num_x, threads):
            if clear:
                weighted[x].reshape(-1)[:] = 0
            count, plane_first, plane_last = 0, _NO_ROW, -1
            for g in range(num):
                if x < lo[g, 0] or x > hi[g, 0]:
                    continue
                first, last = _row_range(g, x, lo, hi, coef, size, cutoff)
                if first <= last:
                    reach[count, 0], reach[count, 1], reach[count, 2] = g, first, last
                    count += 1
                    plane_first, plane_last = min(plane_first, first), max(plane_last, last)
            for block in range(plane_first, plane_last + 1, BLOCK_ROWS):
                block_last = min(block + BLOCK_ROWS, num_y) - 1
                used_first, used_last, group = _NO_ROW, -1, 0
                for a in range(count):
                    g = reach[a, 0]
                    first, last = max(reach[a, 1], block), min(reach[a, 2], block_last)
                    if first > last:
                        continue
                    first, last = _gaussian_patch(g, x, first, last, block, lo, hi, coef, size, cutoff, num_z,
                                                  patches[t, group], lanes)
                    if first > last:
                        continue
                    used_first, used_last = min(used_first, first), max(used_last, last)
                    members[group, 0], members[group, 1], members[group, 2] = g, first, last
                    group += 1
                    if group == GROUP:
                        _accumulate(members, group, patches[t], sources, block, num_z, sums)
                        group = 0
                if group > 0:
                    _accumulate(members, group, patches[t], sources, block, num_z, sums)
                if used_first <= used_last:
                    _write_block(x, block, used_first, used_last, sums, patches[t, 0], floor, density, weighted)


@_jit(fastmath={"contract"})
def _accumulate(members, group, patches, sources, block, num_z, sums):
    """Add the patches of members[:group] (Gaussian, first row, last row; group <= GROUP) to the block's sums
    (C + 1, BLOCK_ROWS * Z): sums[ch] += sum_i sources[ch, g_i] * patch_i over the rows the group reaches (each
    patch zero-filled there outside its own rows; a missing member counts with value 0)."""
    first, last = _NO_ROW, -1
    for i in range(group):
        first, last = min(first, members[i, 1]), max(last, members[i, 2])
    for i in range(group):
        patches[i, (first - block) * num_z:(members[i, 1] - block) * num_z] = 0
        patches[i, (members[i, 2] - block + 1) * num_z:(last - block + 1) * num_z] = 0
    start, stop = (first - block) * num_z, (last - block + 1) * num_z
    one, two, three = min(1, group - 1), min(2, group - 1), min(3, group - 1)  # missing: patch 0, value 0
    p0, p1 = patches[0, start:stop], patches[one, start:stop]
    p2, p3 = patches[two, start:stop], patches[three, start:stop]
    zero = sums.dtype.type(0)
    for ch in range(sources.shape[0]):
        v = sources[ch]
        v0, v1 = v[members[0, 0]], v[members[one, 0]] if group > 1 else zero
        v2, v3 = v[members[two, 0]] if group > 2 else zero, v[members[three, 0]] if group > 3 else zero
        target = sums[ch, start:stop]
        for j in range(stop - start):
            target[j] += v0 * p0[j] + v1 * p1[j] + v2 * p2[j] + v3 * p3[j]


@_jit(fastmath={"contract"})
def _write_block(x, block, first, last, sums, inverse, floor, density, weighted):
    """Normalise rows first..last of plane x from the block's sums (block: its first row) into density and
    weighted (the rows' (Z, C) features = sums / max(density, floor)), then zero those sums. inverse:
    scratch of at least BLOCK_ROWS * Z values."""
    num_y, num_z, channels = weighted.shape[1], weighted.shape[2], weighted.shape[3]
    begin, end = (first - block) * num_z, (last - block + 1) * num_z
    offset = block * num_z
    block_density = sums[channels]
    for v in range(begin, end):
        inverse[v] = 1.0 / max(block_density[v], floor)
    density[x].reshape(num_y * num_z)[offset + begin:offset + end] = block_density[begin:end]
    plane = weighted[x].reshape(num_y * num_z, channels)
    for v in range(begin, end):
        if block_density[v] > 0:
            row = plane[offset + v]
            scale = inverse[v]
            for ch in range(channels):
                row[ch] = sums[ch, v] * scale
    for ch in range(channels + 1):
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
def _row_range(g, x, lo, hi, coef, size, cutoff):
    """(first, last): the rows y of plane x where Gaussian g's weight can reach the cutoff within its box
    (first > last: none): q(dx, dy) >= cutoff, i.e. q_yy dy^2 + q_xy dy + (q_x - cutoff) >= 0, q_yy < 0."""
    q_xx, q_xy2, q_yy = coef[g, 0], coef[g, 1], coef[g, 2]
    rel_x, rel_y = coef[g, 6], coef[g, 7]
    dx = (x + 0.5) * size - rel_x
    q_x, q_xy = q_xx * dx * dx, q_xy2 * dx
    y_lo, y_hi = lo[g, 1], hi[g, 1]
    if q_yy < 0:
        disc = q_xy * q_xy - 4 * q_yy * (q_x - cutoff)
        if disc < 0:
            return _NO_ROW, -1
        root = math.sqrt(disc)
        inv_size = 1.0 / size
        lowest = (rel_y + (-q_xy + root) / (2 * q_yy)) * inv_size - 0.5
        highest = (rel_y + (-q_xy - root) / (2 * q_yy)) * inv_size - 0.5
        y_lo = max(y_lo, int(math.ceil(max(lowest, y_lo - 1.0))))
        y_hi = min(y_hi, int(math.floor(min(highest, y_hi + 1.0))))
    return y_lo, y_hi


@_jit(fastmath={"contract"})
def _gaussian_patch(g, x, y_lo, y_hi, block, lo, hi, coef, size, cutoff, num_z, patch, lanes):
    """Weights of Gaussian g on rows y_lo..y_hi of plane x into patch, voxel (y, k) at (y - block) * Z + k.

    coef (N, 11): from _column_coefficients. Rows are written whole (zeros outside the box's z range
    and where the weight is below the cutoff), four at a time (independent dependency chains for the
    exponential; up to three rows past y_hi are written too: patch holds BLOCK_ROWS + 3 rows), in patch's
    dtype (float32: twice the vector lanes of float64, within a few float32 ulps). lanes: (2, Z), row 0 = k.
    Returns (first, last): the rows holding a weight (first > last: none).
    """
    real = patch.dtype.type
    q_xx, q_xy2, q_yy, s, c_x, c_y = coef[g, 0], coef[g, 1], coef[g, 2], coef[g, 3], coef[g, 4], coef[g, 5]
    rel_x, rel_y, rel_z, opacity, step = coef[g, 6], coef[g, 7], coef[g, 8], coef[g, 9], coef[g, 10]
    dx = (x + 0.5) * size - rel_x
    q_x, q_xy = q_xx * dx * dx, q_xy2 * dx
    u_x = step * 0.5 - s * rel_z - c_x * dx
    lane_cutoff, lane_step = real(cutoff), real(step)
    index, box = lanes[0], lanes[1]  # per z voxel: k (set by the caller), the opacity inside the box's z range
    for k in range(num_z):
        box[k] = opacity if lo[g, 2] <= k <= hi[g, 2] else 0.0
    first, last = _NO_ROW, -1
    # ln(w / opacity) at (y, k) = q(dy) - (s dz_k - centre_z)^2 = q - (k step + u_0)^2, dz_k = (k + 0.5) size - rel_z,
    # q = min(q_x + q_xy dy + q_yy dy^2, 0), u_0 = u_x - c_y dy: below the cutoff for every k when q is.
    for y in range(y_lo, y_hi + 1, 4):
        q0, u0 = _column(y, y_hi, size, rel_y, q_x, q_xy, q_yy, u_x, c_y)
        q1, u1 = _column(y + 1, y_hi, size, rel_y, q_x, q_xy, q_yy, u_x, c_y)
        q2, u2 = _column(y + 2, y_hi, size, rel_y, q_x, q_xy, q_yy, u_x, c_y)
        q3, u3 = _column(y + 3, y_hi, size, rel_y, q_x, q_xy, q_yy, u_x, c_y)
        for r, q in enumerate((q0, q1, q2, q3)):
            if q >= cutoff:
                first, last = min(first, y + r), y + r
        q0, q1, q2, q3 = real(q0), real(q1), real(q2), real(q3)
        u0, u1, u2, u3 = real(u0), real(u1), real(u2), real(u3)
        base = (y - block) * num_z
        row0, row1 = patch[base:base + num_z], patch[base + num_z:base + 2 * num_z]
        row2, row3 = patch[base + 2 * num_z:base + 3 * num_z], patch[base + 3 * num_z:base + 4 * num_z]
        for k in range(num_z):  # branch-free, vectorised over k (exp included), four rows interleaved
            shift, weight = index[k] * lane_step, box[k]
            e0, e1 = q0 - (shift + u0) ** 2, q1 - (shift + u1) ** 2
            e2, e3 = q2 - (shift + u2) ** 2, q3 - (shift + u3) ** 2
            # the exponential of max(e, cutoff): far below, its series would pass through subnormals (slow)
            row0[k] = weight * _exp_lane(max(e0, lane_cutoff)) if e0 >= lane_cutoff else real(0)
            row1[k] = weight * _exp_lane(max(e1, lane_cutoff)) if e1 >= lane_cutoff else real(0)
            row2[k] = weight * _exp_lane(max(e2, lane_cutoff)) if e2 >= lane_cutoff else real(0)
            row3[k] = weight * _exp_lane(max(e3, lane_cutoff)) if e3 >= lane_cutoff else real(0)
    return first, last


@_jit(fastmath={"contract"})
def _column(y, y_hi, size, rel_y, q_x, q_xy, q_yy, u_x, c_y):
    """(q, u_0) of row y's column (see _gaussian_patch); q = -inf past y_hi (every weight masked)."""
    dy = (y + 0.5) * size - rel_y
    q = min(q_x + q_xy * dy + q_yy * dy * dy, 0.0) if y <= y_hi else -math.inf
    return q, u_x - c_y * dy


def _exp_lane(x):
    """exp of a kernel weight's exponent: libm's for float64 (float64 outputs), _exp_above_cutoff for float32
    (numba picks by the argument's type at compile time: no branch in the vectorised loops)."""
    return math.exp(x)


if numba is not None:

    @numba.extending.overload(_exp_lane)
    def _exp_lane_typed(x):
        if x == numba.types.float64:
            return lambda x: math.exp(x)
        return lambda x: _exp_above_cutoff(x)
