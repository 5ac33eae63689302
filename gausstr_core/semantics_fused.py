"""Fused CPU kernel (numba JIT) of OpenVocabularyHead.classify_voxels: two passes over the touched voxels.

Same maths as semantics.py (steps 3-5), without (M, P) temporaries:
1. Denoising (threshold > 0): prompt p is kept when some touched voxel has softmax(T q)_p >= threshold
   (or, with untouched voxels in the grid, when 1 / P >= threshold). softmax(T q)_p <= exp(T (q_p - max q)),
   so only prompts within ln(threshold) / T of the voxel's maximum are candidates, and a voxel's
   normaliser is evaluated only when it has a candidate not yet known to be kept (threads keep
   their own flags, OR-ed at the end).
2. Per touched voxel: softmax(q) times the kept mask, merged by max over each class's prompts: the
   class of the largest kept q (softmax is monotone; ties go to the lower class index, as argmax),
   confidence exp(q_best - max q) / sum_p exp(q_p - max q); voxels with density <= the density
   threshold get the free label and the free class's merged probability.
Untouched voxels (density 0, q = 0) get the free label and the closed-form uniform value, as in
semantics.py. Threads: torch.get_num_threads(), over blocks of voxels.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gausstr_core.voxelize_fused import _EXP_TAYLOR, PARALLEL_LOCK, _exp_neg, _jit, numba

_BLOCK = 4096  # voxels per parallel work item


def available() -> bool:
    """True when numba imported (the fused kernel can run)."""
    return numba is not None


def classify(
    density: torch.Tensor,
    voxel_prompt_probs: torch.Tensor,
    prompt_to_class: torch.Tensor,
    free_label: int,
    density_threshold: float,
    denoise_threshold: float,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """density (X, Y, Z), q (X, Y, Z, P) CPU tensors -> labels (X, Y, Z) uint8, confidence (X, Y, Z).

    prompt_to_class (P,) class of each prompt; thresholds and temperature as OpenVocabularyHead's.
    """
    if numba is None:
        raise RuntimeError("semantics_fused.classify: numba is not installed")
    num_prompts = voxel_prompt_probs.shape[-1]
    flat_density = density.detach().reshape(-1).contiguous().numpy()
    q = voxel_prompt_probs.detach().reshape(-1, num_prompts).contiguous().numpy()
    classes = prompt_to_class.to(torch.int64).contiguous().numpy()
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    keep = np.ones(num_prompts, dtype=np.bool_)
    labels = np.empty(flat_density.shape[0], dtype=np.uint8)
    confidence = np.empty(flat_density.shape[0], dtype=flat_density.dtype)
    with PARALLEL_LOCK:
        numba.set_num_threads(threads)
        if denoise_threshold > 0:
            flags = np.zeros((threads, num_prompts), dtype=np.bool_)
            _kept_prompts(flat_density, q, float(temperature), float(denoise_threshold), flags)
            keep = flags.any(0)
            if bool((flat_density <= 0).any()):
                keep |= 1.0 / num_prompts >= denoise_threshold
        _label_voxels(flat_density, q, classes, keep, free_label, float(density_threshold), labels, confidence)
    shape = tuple(density.shape)
    return torch.from_numpy(labels).view(shape), torch.from_numpy(confidence).view(shape)


@_jit(parallel=True, fastmath={"contract"})
def _kept_prompts(density, q, temperature, threshold, flags):
    """flags (T, P): thread t's prompts reaching softmax(temperature q)_p >= threshold in its voxels."""
    num, num_prompts = q.shape
    threads = flags.shape[0]
    margin = math.log(threshold) / temperature  # q_p - max q below this: softmax(T q)_p < threshold
    for t in numba.prange(threads):
        kept = flags[t]
        for v in range(t * _BLOCK, num, threads * _BLOCK):
            for voxel in range(v, min(v + _BLOCK, num)):
                if density[voxel] <= 0:
                    continue
                top = q[voxel, 0]
                for p in range(1, num_prompts):
                    top = max(top, q[voxel, p])
                norm = -1.0
                for p in range(num_prompts):
                    if kept[p] or q[voxel, p] - top < margin:
                        continue
                    if norm < 0:
                        norm = 0.0
                        for j in range(num_prompts):
                            norm += _exp_neg(temperature * (q[voxel, j] - top))
                    if _exp_neg(temperature * (q[voxel, p] - top)) / norm >= threshold:
                        kept[p] = True


@_jit(fastmath={"contract"})
def _exp_unit(x):
    """exp(x) for -1 <= x <= 0 (vectorisable): its degree-9 Taylor series around -1/2 (relative error ~3e-10)."""
    y = x + 0.5
    c = _EXP_TAYLOR
    return c[0] + y * (c[1] + y * (c[2] + y * (c[3] + y * (c[4] + y * (c[5] + y * (c[6] + y * (c[7] + y * (
        c[8] + y * c[9]))))))))


@_jit(inline="always")
def _exp_either(x, unit):
    """_exp_unit(x) when every exponent of the voxel lies in [-1, 0] (`unit`), else _exp_neg(x)."""
    return _exp_unit(x) if unit else _exp_neg(x)


@_jit(parallel=True, fastmath={"contract"})
def _label_voxels(density, q, classes, keep, free_label, density_threshold, labels, confidence):
    """Steps 3-5 per voxel (module docstring) into labels (V,) and confidence (V,)."""
    num, num_prompts = q.shape
    free_uniform = 0.0  # untouched voxels: max over the free class's kept prompts of 1 / P
    for p in range(num_prompts):
        if keep[p] and classes[p] == free_label:
            free_uniform = 1.0 / num_prompts
    blocks = (num + _BLOCK - 1) // _BLOCK
    for b in numba.prange(blocks):
        terms = np.empty(num_prompts)  # exp(q_p - max q) of one voxel: a loop the compiler vectorises
        for voxel in range(b * _BLOCK, min((b + 1) * _BLOCK, num)):
            d = density[voxel]
            if d <= 0:
                labels[voxel] = free_label
                confidence[voxel] = free_uniform
                continue
            top = low = q[voxel, 0]
            for p in range(1, num_prompts):
                top = max(top, q[voxel, p])
                low = min(low, q[voxel, p])
            unit = top - low <= 1.0  # probabilities: every exponent in [-1, 0], the short series suffices
            for p in range(num_prompts):
                terms[p] = _exp_either(q[voxel, p] - top, unit)
            norm = 0.0
            for p in range(num_prompts):
                norm += terms[p]
            best_class, best_q, free_q = -1, -np.inf, -np.inf
            for p in range(num_prompts):
                if not keep[p]:
                    continue
                value, k = q[voxel, p], classes[p]
                if value > best_q or (value == best_q and k < best_class):
                    best_class, best_q = k, value
                if k == free_label:
                    free_q = max(free_q, value)
            if d <= density_threshold:
                labels[voxel] = free_label
                confidence[voxel] = _exp_either(free_q - top, unit) / norm if free_q > -np.inf else 0.0
            elif best_class < 0:  # no prompt kept: every merged probability is 0, argmax gives class 0
                labels[voxel] = 0
                confidence[voxel] = 0.0
            else:
                labels[voxel] = best_class
                confidence[voxel] = _exp_either(best_q - top, unit) / norm
