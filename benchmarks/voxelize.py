"""Benchmark voxelize_gaussians against per-Gaussian Python loops on a GaussTR-sized scene.

Scene: 1800 Gaussians with GaussTR's scale distribution (s in [1, 16] per axis, times
depth * 7.5 / fx, depth uniform in 2..50 m, fx = 1266.42 * 0.56 at the network-input size),
uniformly random rotations, means at that depth around the ego vehicle, C = 18 probability
features, the Occ3D 200 x 200 x 16 grid. Reference (in this file): a straightforward loop over the
Gaussians, as the authors' voxeliser does: per Gaussian, its clipped 3-sigma box, the Mahalanobis
distances of the box's voxel centres (one einsum), accumulation of density and weighted features;
it applies the voxeliser's covariance regularisation, so the results must agree.
Prints times (median of repeats) of voxelize_gaussians (the fused numba kernel when numba is
installed), of its PyTorch path and of the loop, max |difference| relative to the peak density and
the max feature difference (everywhere and where occupied), peak memory of
the voxeliser (resident-set high-water mark of its first call in a fresh subprocess: VmHWM after
resetting it through /proc/self/clear_refs, minus VmRSS before the call), CUDA time when a GPU is present, and the
speed ratios last.

Usage: python benchmarks/voxelize.py [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time

import torch

from gausstr_core import voxelize_fused
from gausstr_core.geometry import covariance_from_scale_rotation, quat_to_rotmat
from gausstr_core.grid import VoxelGrid
from gausstr_core.voxelize import DEFAULT_EPS, RELATIVE_EPS, voxelize_gaussians

NUM_GAUSSIANS = 1800
CHANNELS = 18
FX = 1266.42 * 0.56
OCCUPIED_DENSITY = 4e-2  # the configs' inference.density_threshold


def gausstr_scene(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """means (N, 3) ego m, covariances (N, 3, 3), opacities (N,), features (N, C) probabilities."""
    gen = torch.Generator().manual_seed(seed)
    depth = 2 + 48 * torch.rand(NUM_GAUSSIANS, generator=gen)
    azimuth = 2 * math.pi * torch.rand(NUM_GAUSSIANS, generator=gen)
    height = -1 + 6.4 * torch.rand(NUM_GAUSSIANS, generator=gen)
    means = torch.stack([depth * azimuth.cos(), depth * azimuth.sin(), height], -1)
    s = 1 + 15 * torch.rand(NUM_GAUSSIANS, 3, generator=gen)
    scales = s * (depth * 7.5 / FX)[:, None]
    rotations = quat_to_rotmat(torch.randn(NUM_GAUSSIANS, 4, generator=gen))
    covariances = covariance_from_scale_rotation(scales, rotations)
    opacities = torch.sigmoid(torch.randn(NUM_GAUSSIANS, generator=gen))
    features = torch.softmax(3 * torch.randn(NUM_GAUSSIANS, CHANNELS, generator=gen), -1)
    return means, covariances, opacities, features


def _regularised(covariances: torch.Tensor) -> torch.Tensor:
    jitter = DEFAULT_EPS + RELATIVE_EPS * torch.diagonal(covariances, dim1=-2, dim2=-1).mean(-1)
    return covariances + jitter[:, None, None] * torch.eye(3)


def _boxes(means: torch.Tensor, covariances: torch.Tensor, grid: VoxelGrid) -> list[tuple[slice, slice, slice] | None]:
    boxes = []
    for mean, cov in zip(means.tolist(), covariances):
        sigma = cov.diagonal().sqrt().tolist()
        box = []
        for axis in range(3):
            lo = math.floor((mean[axis] - 3 * sigma[axis] - grid.range[axis]) / grid.size)
            hi = math.floor((mean[axis] + 3 * sigma[axis] - grid.range[axis]) / grid.size)
            box.append(slice(max(lo, 0), min(hi, grid.dims[axis] - 1) + 1))
        boxes.append(tuple(box) if all(b.start < b.stop for b in box) else None)
    return boxes


def loop_voxelize(means, covariances, opacities, features, grid: VoxelGrid):
    """Per-Gaussian loop reference: density (X, Y, Z), features (X, Y, Z, C)."""
    covariances = _regularised(covariances)
    centres = grid.centers()
    density = torch.zeros(grid.dims)
    weighted = torch.zeros(*grid.dims, features.shape[1])
    for g, box in enumerate(_boxes(means, covariances, grid)):
        if box is None:
            continue
        d = centres[box] - means[g]
        maha = torch.einsum("...i,ij,...j->...", d, covariances[g].inverse(), d)
        weight = opacities[g] * torch.exp(-0.5 * maha)
        density[box] += weight
        weighted[box] += weight[..., None] * features[g]
    return density, weighted / density.clamp(min=1e-6)[..., None]


def timed(fn, repeats: int, sync=lambda: None) -> tuple[float, float, object]:
    """Median wall-clock and median process CPU seconds over repeats, and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        sync()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


MEMORY_CHILD = r"""
import json, sys, torch
sys.path.insert(0, {root!r})
from benchmarks.voxelize import gausstr_scene
from gausstr_core.grid import VoxelGrid
from gausstr_core.voxelize import voxelize_gaussians
torch.set_num_threads({threads})
scene, grid = gausstr_scene(), VoxelGrid()
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
with torch.no_grad():  # first call, no warm-up: an upper bound (includes one-off allocations)
    before = status("VmRSS:")
    try:
        open("/proc/self/clear_refs", "w").write("5")
        method = "VmHWM after clear_refs"
    except OSError:
        method = "ru_maxrss (includes earlier peaks)"
    result = voxelize_gaussians(*scene, grid)
    peak = status("VmHWM:")
print(json.dumps({{"delta": peak - before, "method": method}}))
"""


def peak_memory(threads: int) -> dict:
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    child = MEMORY_CHILD.format(root=root, threads=threads)
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True, cwd=root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    grid = VoxelGrid()
    scene = gausstr_scene()
    print(f"scene: {NUM_GAUSSIANS} Gaussians, C = {CHANNELS}, grid {grid.dims}, CPU threads {args.threads}")

    backend = "fused" if voxelize_fused.available() else "torch"
    print(f"voxelize_gaussians backend: {backend}")
    with torch.no_grad():
        voxelize_gaussians(*scene, grid)  # warm-up (and the JIT compile of the fused kernel)
        fast = timed(lambda: voxelize_gaussians(*scene, grid), args.repeats)
        torch_path = timed(lambda: voxelize_gaussians(*scene, grid, backend="torch"), args.repeats)
        loop = timed(lambda: loop_voxelize(*scene, grid), 1)
        (density, features), (ref_density, ref_features) = fast[2], loop[2]
        peak = float(ref_density.max())
        occupied = ref_density > OCCUPIED_DENSITY
        print(f"voxelize_gaussians (CPU, {backend}): {fast[0] * 1e3:.1f} ms wall, {fast[1] * 1e3:.1f} ms CPU "
              f"(median of {args.repeats})")
        print(f"PyTorch path (CPU):       {torch_path[0] * 1e3:.1f} ms wall, {torch_path[1] * 1e3:.1f} ms CPU")
        print(f"loop reference (CPU):     {loop[0] * 1e3:.1f} ms wall, {loop[1] * 1e3:.1f} ms CPU")
        feature_diff = (features - ref_features).abs().amax(-1)
        print(
            f"max |density diff| / peak density: {float((density - ref_density).abs().max()) / peak:.2e}"
            f" (peak {peak:.3f}, target <= 1e-4); max |feature diff|: {float(feature_diff.max()):.2e} everywhere, "
            f"{float(feature_diff[occupied].max()):.2e} where occupied (density > {OCCUPIED_DENSITY}, target <= 1e-3)"
        )

        memory = peak_memory(args.threads)
        print(f"peak memory of one call: {memory['delta'] / 2**20:.0f} MiB ({memory['method']})")

        if torch.cuda.is_available():
            cuda_scene = [t.cuda() for t in scene]
            run_cuda = lambda: voxelize_gaussians(*cuda_scene, grid, chunk_size=1 << 26)  # noqa: E731
            run_cuda()
            cuda_wall, _, (cuda_density, _) = timed(run_cuda, 20, torch.cuda.synchronize)
            diff = float((cuda_density.cpu() - density).abs().max()) / peak
            print(f"voxelize_gaussians (CUDA, {torch.cuda.get_device_name()}): {cuda_wall * 1e3:.2f} ms "
                  f"(max |diff| / peak vs CPU {diff:.2e})")

    print(f"speed-up of the PyTorch path vs the loop: {loop[0] / torch_path[0]:.1f}x wall")
    print(f"speed-up vs the loop (target >= 30x): {loop[0] / fast[0]:.1f}x wall, {loop[1] / fast[1]:.1f}x CPU time")


if __name__ == "__main__":
    main()
