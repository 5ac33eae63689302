"""Fused CPU vertical pass of ResizeCrop.image for uint8 frames (numba JIT): resize, crop and scale
to [0, 1] in one loop over whole rows.

ResizeCrop.image (antialiased bilinear, separable) is, for a 1600x900 camera frame, more costly than
decoding its JPEG. Its vertical pass is a weighted sum of a few whole rows per output row,

    out[c, y, x] = sum_k w[y, k] * src[c, start[y] + k, left + x] / 255,

which this kernel runs with contiguous inner loops (vectorised by the compiler) reading the uint8
rows directly: no float copy of the frame, no separate crop. The weights are those of torch's float
kernel, read off once per plan by resizing an identity matrix, and the sums are formed in its order
(fused multiply-adds), so the result equals `F.interpolate(src.float(), ...)[..., crop] / 255` bit for
bit on CPUs with FMA (any x86-64-v3), and to float rounding elsewhere. Numba releases the GIL here
(`nogil`), so frames of several cameras run in parallel threads. `available()` is False without
numba; callers then use the PyTorch path.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from gausstr_core.data.augment import ResizeCrop
from gausstr_core.voxelize_fused import _jit, available, numba  # noqa: F401 -- available: this kernel's too


@functools.lru_cache(maxsize=16)
def vertical_weights(in_rows: int, out_rows: int, top: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of torch's antialiased bilinear resize from in_rows to out_rows, cropped to [top, top + rows).

    Returns start (rows,) int64, the first source row of each output row, and weights (rows, K) float32
    (zero-padded; start + K <= in_rows).
    """
    if in_rows == out_rows:
        return np.arange(top, top + rows, dtype=np.int64), np.ones((rows, 1), dtype=np.float32)
    eye = torch.eye(in_rows, dtype=torch.float32)[None, None]
    dense = F.interpolate(eye, size=(out_rows, in_rows), mode="bilinear", align_corners=False, antialias=True)
    dense = dense[0, 0, top : top + rows].numpy()  # (rows, in_rows): weight of source row j for output row y
    nonzero = dense != 0
    first = nonzero.argmax(axis=1)
    last = in_rows - 1 - nonzero[:, ::-1].argmax(axis=1)
    taps = int((last - first).max()) + 1
    start = np.minimum(first, in_rows - taps).astype(np.int64)
    index = start[:, None] + np.arange(taps)[None, :]
    return start, np.ascontiguousarray(np.take_along_axis(dense, index, axis=1), dtype=np.float32)


def vertical_pass(rows_resized: torch.Tensor, resize: ResizeCrop, out: torch.Tensor | None = None) -> torch.Tensor:
    """(C, h, rw) uint8 CPU, already at the plan's resized width rw -> (C, out H, out W) float32 in [0, 1]:
    the plan's vertical resize from h to its resized height, its crop, / 255. out: an optional contiguous
    float32 (C, out H, out W) tensor written and returned (e.g. one view of a batch: no stacking copy)."""
    if numba is None:
        raise RuntimeError("resize_fused.vertical_pass: numba is not installed")
    (rh, rw), (top, left), (oh, ow) = resize.resized, resize.offset, resize.out_size
    if rows_resized.dtype != torch.uint8 or rows_resized.dim() != 3 or rows_resized.shape[-1] != rw:
        raise ValueError(f"vertical_pass: expected (C, h, {rw}) uint8, got {tuple(rows_resized.shape)} "
                         f"{rows_resized.dtype}")
    shape = (rows_resized.shape[0], oh, ow)
    if out is None:
        out = torch.empty(shape)
    elif tuple(out.shape) != shape or out.dtype != torch.float32 or not out.is_contiguous() or out.is_cuda:
        raise ValueError(f"vertical_pass: out must be a contiguous float32 CPU tensor {shape}, got "
                         f"{tuple(out.shape)} {out.dtype}")
    start, weights = vertical_weights(int(rows_resized.shape[1]), rh, top, oh)
    _vertical_kernel(rows_resized.contiguous().numpy(), start, weights, left, out.numpy())
    return out


@_jit(fastmath={"contract"})
def _vertical_kernel(src, start, weights, left, out):
    """out[c, y, x] = (sum_k weights[y, k] * src[c, start[y] + k, left + x]) / 255 in float32, summed as
    torch's CPU kernel does (first tap's product, then a fused multiply-add per tap), so that on CPUs with
    FMA the result is torch's bit for bit (see vertical_pass)."""
    channels, rows, width = out.shape
    taps = weights.shape[1]
    for c in range(channels):
        for y in range(rows):
            row = out[c, y]
            first = src[c, start[y], left : left + width]
            w = weights[y, 0]
            for x in range(width):
                row[x] = w * np.float32(first[x])
            for k in range(1, taps):
                w = weights[y, k]
                source = src[c, start[y] + k, left : left + width]
                for x in range(width):
                    row[x] += w * np.float32(source[x])
            for x in range(width):
                row[x] /= np.float32(255)
