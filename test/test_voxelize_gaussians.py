"""voxelize_gaussians against a per-Gaussian NumPy loop; adversarial Gaussians; gradients; chunking;
the fused kernels (C++ and numba) against the PyTorch path, and the fallbacks when they are missing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gausstr_core import voxelize_fused, voxelize_native
from gausstr_core.geometry import covariance_from_scale_rotation, quat_to_rotmat
from gausstr_core.grid import VoxelGrid
from gausstr_core.voxelize import DEFAULT_EPS, RELATIVE_EPS, filter_gaussians, voxelize_gaussians

# 20 x 20 x 18 voxels: not a multiple of the 8 x 8 x 16 tile on any axis.
GRID = VoxelGrid(range=(-4.0, -4.0, -1.0, 4.0, 4.0, 6.2), size=0.4)


@pytest.fixture(params=["native", "numba"])
def fused_kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with the C++ kernel (skipped when it is not built here), then with numba's alone."""
    pytest.importorskip("numba")
    if request.param == "native" and voxelize_native.module() is None:
        pytest.skip(f"C++ kernel not built: {voxelize_native.unavailable_reason()}")
    if request.param == "numba":
        monkeypatch.setattr(voxelize_native, "module", lambda: None)
    return request.param


def reference_voxelize(means, covariances, opacities, features, grid, eps=DEFAULT_EPS):
    """Straightforward loop: each Gaussian adds o exp(-d^T S^-1 d / 2) to its clipped 3-sigma box."""
    means, covariances = means.double().numpy(), covariances.double().numpy()
    opacities, features = opacities.double().numpy(), features.double().numpy()
    dims = grid.dims
    centres = grid.centers(dtype=torch.float64).numpy()
    density = np.zeros(dims)
    weighted = np.zeros((*dims, features.shape[1]))
    for mean, cov, opacity, feature in zip(means, covariances, opacities, features):
        cov = cov + (eps + RELATIVE_EPS * np.trace(cov) / 3) * np.eye(3)
        sigma = np.sqrt(np.diag(cov))
        box = []
        for axis in range(3):
            lo = math.floor((mean[axis] - 3 * sigma[axis] - grid.range[axis]) / grid.size)
            hi = math.floor((mean[axis] + 3 * sigma[axis] - grid.range[axis]) / grid.size)
            box.append(slice(max(lo, 0), min(hi, dims[axis] - 1) + 1))
        if any(s.start >= s.stop for s in box):
            continue
        d = centres[tuple(box)] - mean
        weight = opacity * np.exp(-0.5 * np.einsum("...i,ij,...j->...", d, np.linalg.inv(cov), d))
        density[tuple(box)] += weight
        weighted[tuple(box)] += weight[..., None] * feature
    return density, weighted / np.maximum(density, 1e-6)[..., None]


def random_gaussians(num, channels, scale_range, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(GRID.range[:3]), torch.tensor(GRID.range[3:])
    means = lo - 1 + (hi - lo + 2) * torch.rand(num, 3, generator=gen)  # some outside the grid
    scales = torch.exp(torch.empty(num, 3).uniform_(*map(math.log, scale_range), generator=gen))
    rotations = quat_to_rotmat(torch.randn(num, 4, generator=gen))
    covariances = covariance_from_scale_rotation(scales, rotations)
    opacities = torch.rand(num, generator=gen)
    features = torch.randn(num, channels, generator=gen)
    return [t.to(dtype) for t in (means, covariances, opacities, features)]


def assert_matches_reference(gaussians, grid=GRID, atol=1e-9, **kwargs):  # default backend: fused when numba is there
    density, features = voxelize_gaussians(*gaussians, grid, **kwargs)
    ref_density, ref_features = reference_voxelize(*gaussians, grid)
    assert density.shape == grid.dims and features.shape == (*grid.dims, gaussians[3].shape[1])
    assert ref_density.max() > 0.1  # the scene really puts mass into the grid
    np.testing.assert_allclose(density.numpy(), ref_density, atol=atol * ref_density.max(), rtol=0)
    np.testing.assert_allclose(features.numpy(), ref_features, atol=atol * 1e3, rtol=1e-6)


def test_random_gaussians_match_loop_reference() -> None:
    assert_matches_reference(random_gaussians(60, 5, (0.05, 1.5), seed=0))


def test_float32_matches_loop_reference() -> None:
    gaussians = random_gaussians(40, 3, (0.1, 1.0), seed=1, dtype=torch.float32)
    density, _ = voxelize_gaussians(*gaussians, GRID)
    assert density.dtype == torch.float32
    ref_density, _ = reference_voxelize(*gaussians, GRID)
    np.testing.assert_allclose(density.numpy(), ref_density, atol=1e-5 * ref_density.max(), rtol=0)


def test_adversarial_gaussians_match_reference_and_stay_finite() -> None:
    rot = quat_to_rotmat(torch.tensor([0.8, 0.3, -0.4, 0.33], dtype=torch.float64))
    cases = [  # (mean, scales, rotation)
        ((0.1, 0.2, 1.0), (1e-4, 1e-4, 1e-4), rot),  # far smaller than a voxel
        ((0.0, 0.0, 2.0), (100.0, 80.0, 50.0), rot),  # box covers the whole grid
        ((3.9, -3.9, 6.0), (0.8, 0.5, 0.7), rot),  # corner, mostly outside
        ((-4.5, 0.0, 1.0), (0.3, 0.3, 0.3), rot),  # centre outside, box pokes in
        ((-6.0, 0.0, 1.0), (0.3, 0.3, 0.3), rot),  # entirely below x_min
        ((0.0, 9.0, 1.0), (0.3, 0.3, 0.3), rot),  # entirely above y_max
        ((1.0, 1.0, 1.0), (2.0, 1.5, 1e-7), rot),  # near-singular: flat pancake, rotated
        ((0.5, 0.0, 2.0), (30.0, 30.0, 1e-7), rot),  # huge pancake: indefinite after float32 rounding
        ((-1.0, 2.0, 0.5), (1.0, 0.0, 0.0), rot),  # exactly singular: a needle
        ((2.0, -2.0, 3.0), (0.0, 0.0, 0.0), rot),  # all-zero covariance
    ]
    means = torch.tensor([c[0] for c in cases], dtype=torch.float64)
    scales = torch.tensor([c[1] for c in cases], dtype=torch.float64)
    covariances = covariance_from_scale_rotation(scales, torch.stack([c[2] for c in cases]))
    opacities = torch.linspace(0.3, 1.0, len(cases), dtype=torch.float64)
    features = torch.randn(len(cases), 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert_matches_reference([means, covariances, opacities, features], atol=1e-8)
    for dtype in (torch.float32, torch.float64):
        inputs = [t.to(dtype).requires_grad_() for t in (means, covariances, opacities, features)]
        density, grid_features = voxelize_gaussians(*inputs, GRID)
        assert torch.isfinite(density).all() and torch.isfinite(grid_features).all()
        assert float(density.detach().max()) <= float(opacities.detach().sum()) + 1e-5
        (density.square().sum() + grid_features.sum()).backward()
        for tensor in inputs:
            assert torch.isfinite(tensor.grad).all()


def test_outside_gaussians_leave_grid_empty() -> None:
    means = torch.tensor([[-6.0, 0.0, 1.0], [0.0, 9.0, 1.0], [0.0, 0.0, -3.0]])
    covariances = torch.eye(3).expand(3, 3, 3) * 0.09
    density, features = voxelize_gaussians(means, covariances, torch.ones(3), torch.ones(3, 2), GRID)
    assert float(density.abs().max()) == 0.0 and float(features.abs().max()) == 0.0


def test_single_voxel_value_by_hand() -> None:
    grid = VoxelGrid(range=(0.0, 0.0, 0.0, 2.0, 2.0, 2.0), size=1.0)  # centres at 0.5 and 1.5
    mean = torch.tensor([[0.5, 0.5, 0.5]])
    cov = torch.diag(torch.tensor([0.25, 1.0, 4.0]))[None]  # sigma 0.5, 1, 2
    density, features = voxelize_gaussians(mean, cov, torch.tensor([0.8]), torch.tensor([[2.0]]), grid, eps=0.0)
    assert density[0, 0, 0].item() == pytest.approx(0.8)
    # voxel (1, 1, 1): d = (1, 1, 1) -> Mahalanobis 1/0.25 + 1 + 1/4 = 5.25
    # (the 1e-5 relative diagonal jitter shifts this by ~1.5e-4 relative)
    assert density[1, 1, 1].item() == pytest.approx(0.8 * math.exp(-0.5 * 5.25), rel=3e-4)
    # x box: floor((0.5 - 1.5) / 1) = -1 .. floor(2.0) = 2 -> clipped to 0..1, so voxel x = 1 is inside
    assert features[1, 1, 1].item() == pytest.approx(2.0, rel=1e-6)


def test_torch_path_matches_loop_reference() -> None:
    assert_matches_reference(random_gaussians(60, 5, (0.05, 1.5), seed=0), backend="torch")


def test_chunk_size_does_not_change_the_result() -> None:
    gaussians = random_gaussians(12, 3, (0.3, 3.0), seed=3)
    density, features = voxelize_gaussians(*gaussians, GRID, backend="torch")
    assert density.max() > 0.5
    for chunk_size in (1, 5000, 20000, 1 << 30):  # one Gaussian per work unit ... everything at once
        other_density, other_features = voxelize_gaussians(*gaussians, GRID, chunk_size=chunk_size, backend="torch")
        torch.testing.assert_close(other_density, density, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(other_features, features, rtol=1e-10, atol=1e-10)


def test_gradcheck_on_a_tiny_grid() -> None:
    grid = VoxelGrid(range=(0.0, 0.0, 0.0, 2.0, 1.5, 1.0), size=0.5)
    gen = torch.Generator().manual_seed(4)
    means = (torch.tensor([[0.7, 0.6, 0.4], [1.3, 0.9, 0.6], [0.2, 1.2, 0.5]], dtype=torch.float64)).requires_grad_()
    factors = (torch.randn(3, 3, 3, generator=gen, dtype=torch.float64) * 0.3).requires_grad_()
    opacities = torch.tensor([0.9, 0.5, 0.7], dtype=torch.float64, requires_grad=True)
    features = torch.randn(3, 2, generator=gen, dtype=torch.float64, requires_grad=True)

    def run(means, factors, opacities, features):
        covariances = factors @ factors.transpose(-1, -2) + 0.05 * torch.eye(3, dtype=torch.float64)
        return voxelize_gaussians(means, covariances, opacities, features, grid)

    assert run(means, factors, opacities, features)[0].max() > 0.1
    assert torch.autograd.gradcheck(run, (means, factors, opacities, features), eps=1e-6, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_kernel_matches_torch_path(dtype: torch.dtype, fused_kernel: str) -> None:
    # Many overlapping, thin and rotated Gaussians (the kernel's z- and y-range cuts), all threads.
    gaussians = random_gaussians(300, 6, (0.02, 2.0), seed=6, dtype=dtype)
    gaussians[2] = gaussians[2].clamp(min=0.05)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fused = voxelize_gaussians(*gaussians, GRID, backend="fused")
    finally:
        torch.set_num_threads(threads)
    density, features = voxelize_gaussians(*gaussians, GRID, backend="torch")
    assert fused[0].dtype == dtype and fused[1].shape == features.shape
    peak = float(density.max())
    tol = 1e-5 if dtype == torch.float32 else 1e-12  # float32: both paths round differently
    assert peak > 1.0
    torch.testing.assert_close(fused[0], density, rtol=0, atol=tol * peak)
    torch.testing.assert_close(fused[1], features, rtol=0, atol=tol * 1e2 * float(features.abs().max()))


def test_fused_kernel_is_safe_from_several_threads(fused_kernel: str) -> None:
    """Concurrent callers (the node's inference and query threads) get the single-call results: the C++
    kernel keeps no shared state; numba's workqueue layer (chosen so that its OpenMP layer does not slow
    PyTorch afterwards) runs one parallel kernel at a time, and its callers wait on the lock instead of
    aborting the process."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    import numba

    scenes = [random_gaussians(60, 4, (0.05, 1.0), seed=s, dtype=torch.float32) for s in range(4)]
    expected = [voxelize_gaussians(*g, GRID, backend="fused") for g in scenes]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda g: voxelize_gaussians(*g, GRID, backend="fused"), scenes * 3))
    for (density, features), (ref_density, ref_features) in zip(got, expected * 3):
        torch.testing.assert_close(density, ref_density, rtol=0, atol=0)
        torch.testing.assert_close(features, ref_features, rtol=0, atol=0)
    if fused_kernel == "numba" and "NUMBA_THREADING_LAYER" not in os.environ:
        assert numba.threading_layer() == "workqueue"


@pytest.mark.parametrize("backend", ["fused", "torch"])
def test_features_out_is_filled_whole(backend: str, fused_kernel: str) -> None:
    """A reused buffer (stale values, NaN here) is overwritten everywhere: the result equals a fresh call's."""
    first = random_gaussians(40, 5, (0.05, 1.0), seed=11, dtype=torch.float32)
    second = random_gaussians(7, 5, (0.05, 0.3), seed=12, dtype=torch.float32)
    expected = voxelize_gaussians(*second, GRID, backend=backend)
    buffer = torch.full((*GRID.dims, 5), float("nan"))
    voxelize_gaussians(*first, GRID, backend=backend, features_out=buffer)
    density, features = voxelize_gaussians(*second, GRID, backend=backend, features_out=buffer)
    assert features.data_ptr() == buffer.data_ptr()
    torch.testing.assert_close(density, expected[0], rtol=0, atol=0)
    torch.testing.assert_close(features, expected[1], rtol=0, atol=0)
    if backend == "fused":
        with pytest.raises(ValueError, match="features_out must be a contiguous CPU torch.float32 tensor"):
            voxelize_gaussians(*second, GRID, backend="fused", features_out=torch.zeros(3, 3))


def test_cpp_kernel_builds_where_a_compiler_is() -> None:
    """The set-up builds the C++ kernel on any machine with a C++ compiler (else numba's runs, silently slower)."""
    import shutil

    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler on PATH")
    assert voxelize_native.module() is not None, voxelize_native.unavailable_reason()
    assert voxelize_native.max_channels() == 32


def test_cpp_kernel_matches_numba_and_hands_over_wide_features(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same results (float32 rounding) on a grid whose Z (18) is not a multiple of the kernel's 16 lanes; more
    channels than it holds go to numba; arrays of the wrong kind are refused with their name."""
    pytest.importorskip("numba")
    native = voxelize_native.module()
    if native is None:
        pytest.skip(f"C++ kernel not built: {voxelize_native.unavailable_reason()}")
    gaussians = random_gaussians(200, 33, (0.02, 2.0), seed=21, dtype=torch.float32)
    few = [*gaussians[:3], gaussians[3][:, :32]]
    cpp = voxelize_gaussians(*few, GRID, backend="fused")
    wide = voxelize_gaussians(*gaussians, GRID, backend="fused")  # 33 channels: the numba kernel
    monkeypatch.setattr(voxelize_native, "module", lambda: None)
    numba_few = voxelize_gaussians(*few, GRID, backend="fused")
    numba_wide = voxelize_gaussians(*gaussians, GRID, backend="fused")
    peak = float(numba_few[0].max())
    assert peak > 1.0
    torch.testing.assert_close(cpp[0], numba_few[0], rtol=0, atol=1e-5 * peak)
    torch.testing.assert_close(cpp[1], numba_few[1], rtol=0, atol=1e-4)
    assert torch.equal(wide[0], numba_wide[0]) and torch.equal(wide[1], numba_wide[1])
    good = dict(lo=np.zeros((1, 3), np.int64), hi=np.zeros((1, 3), np.int64), coef=np.zeros((1, 11)),
                sources=np.zeros((1, 3), np.float32), density=np.zeros((2, 2, 2), np.float32),
                weighted=np.zeros((2, 2, 2, 2), np.float32))
    for name, bad in (("coef", np.zeros((1, 11), np.float32)), ("weighted", np.zeros((2, 2, 2, 3), np.float32)),
                      ("density", np.zeros((2, 2, 2), np.float32)[:, ::-1])):
        args = {**good, name: bad}
        with pytest.raises(ValueError, match=f"splat_cpu: {name} "):
            native.splat(args["lo"], args["hi"], args["coef"], args["sources"], 0.4, -30.0, 1e-6, False, 1,
                         args["density"], args["weighted"])


def test_cpp_kernel_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAUSSTR_NATIVE_KERNEL", "0")
    voxelize_native._build.cache_clear()
    try:
        assert voxelize_native.module() is None and voxelize_native.max_channels() == 0
        assert "GAUSSTR_NATIVE_KERNEL=0" in voxelize_native.unavailable_reason()
    finally:
        voxelize_native._build.cache_clear()


def test_fallback_without_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    gaussians = random_gaussians(20, 3, (0.1, 1.0), seed=7, dtype=torch.float32)
    expected = voxelize_gaussians(*gaussians, GRID, backend="torch")
    monkeypatch.setattr(voxelize_fused, "numba", None)
    assert not voxelize_fused.available()
    density, features = voxelize_gaussians(*gaussians, GRID)  # auto: the PyTorch path
    assert torch.equal(density, expected[0]) and torch.equal(features, expected[1])
    with pytest.raises(ValueError, match="numba is not installed"):
        voxelize_gaussians(*gaussians, GRID, backend="fused")


def test_gradients_keep_the_autograd_path() -> None:
    gaussians = random_gaussians(10, 2, (0.2, 1.0), seed=8)
    gaussians[3].requires_grad_()
    density, features = voxelize_gaussians(*gaussians, GRID)  # auto must not pick the fused kernel
    assert features.grad_fn is not None
    features.sum().backward()
    assert torch.isfinite(gaussians[3].grad).all() and gaussians[3].grad.abs().sum() > 0
    with pytest.raises(ValueError, match="gradients are required"):
        voxelize_gaussians(*gaussians, GRID, backend="fused")
    with pytest.raises(ValueError, match="backend must be"):
        voxelize_gaussians(*gaussians, GRID, backend="numba")


def test_empty_input_gives_empty_grid() -> None:
    empty = (torch.zeros(0, 3), torch.zeros(0, 3, 3), torch.zeros(0), torch.zeros(0, 7))
    density, features = voxelize_gaussians(*empty, GRID)
    assert density.shape == GRID.dims and features.shape == (*GRID.dims, 7)
    assert float(density.abs().sum()) == 0.0


def test_bad_input_raises_clear_errors() -> None:
    means, covariances, opacities, features = random_gaussians(4, 2, (0.1, 1.0), seed=5)
    with pytest.raises(ValueError, match="opacities must have shape"):
        voxelize_gaussians(means, covariances, opacities[:, None], features, GRID)
    with pytest.raises(ValueError, match="covariances must have shape"):
        voxelize_gaussians(means, covariances[:, :2], opacities, features, GRID)
    nan_means = means.clone()
    nan_means[1, 2] = float("nan")
    with pytest.raises(ValueError, match="means contains NaN"):
        voxelize_gaussians(nan_means, covariances, opacities, features, GRID)
    negative = covariances.clone()
    negative[2] = -torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"covariances \[2\] are not positive"):
        voxelize_gaussians(means, negative, opacities, features, GRID)
    with pytest.raises(ValueError, match="chunk_size"):
        voxelize_gaussians(means, covariances, opacities, features, GRID, chunk_size=0)


def test_filter_gaussians_applies_each_rule() -> None:
    means = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [9.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    scales = torch.tensor([[0.2, 0.2, 0.2], [0.2, 0.2, 0.2], [0.2, 0.2, 0.2], [0.2, 0.2, 0.01]])
    covariances = covariance_from_scale_rotation(scales, torch.eye(3).expand(4, 3, 3))
    opacities = torch.tensor([0.9, 0.5, 0.9, 0.9])
    keep = filter_gaussians(means, covariances, opacities, GRID, min_opacity=0.6, min_extent=1.5e-2)
    # 6 * 0.04 = 0.24 > 1.5e-2 keeps #0; #1 too transparent; #2 outside; #3: 6 * 1e-4 too thin
    assert keep.tolist() == [True, False, False, False]
