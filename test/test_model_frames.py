"""Gaussian head frames: with du = dv = dz = 0 the means are the back-projected pixel centres."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gausstr_core.config import ModelConfig
from gausstr_core.model import GaussTR

H, W = 12, 20  # network input size
QUERIES = 6


def _small_config(**overrides) -> ModelConfig:
    values = dict(feature_dim=16, patch_size=4, embed_dims=32, num_queries=QUERIES, num_layers=2, num_heads=2,
                  num_points=2, ffn_dims=64, mlp_hidden=64)
    return ModelConfig(**{**values, **overrides})


def _zero_offsets(model: GaussTR) -> None:
    """Force (du, dv, dz) = 0 in every layer (also freezes the reference refinement)."""
    with torch.no_grad():
        for head in model.heads:
            head.offset.fc2.weight.zero_()
            head.offset.fc2.bias.zero_()


def _rig(views: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random cam2ego (views, 4, 4) and original-pixel K (views, 3, 3), float64."""
    rng = np.random.default_rng(seed)
    cam2ego = np.tile(np.eye(4), (views, 1, 1))
    cam2ego[:, :3, :3] = Rotation.random(views, random_state=seed).as_matrix()
    cam2ego[:, :3, 3] = rng.uniform(-2, 2, (views, 3))
    k = np.zeros((views, 3, 3))
    k[:, 0, 0] = rng.uniform(80, 120, views)
    k[:, 1, 1] = k[:, 0, 0] * rng.uniform(0.9, 1.1, views)
    k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = rng.uniform(70, 90, views), rng.uniform(40, 50, views), 1
    return cam2ego, k


def _pixel_centre_refs(views: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct pixel indices (views, Q, 2) as (col, row) and the matching normalised refs."""
    rng = np.random.default_rng(seed)
    flat = np.stack([rng.choice(H * W, QUERIES, replace=False) for _ in range(views)])
    cols, rows = flat % W, flat // W
    idx = np.stack([cols, rows], -1)
    refs = np.stack([(cols + 0.5) / W, (rows + 0.5) / H], -1)
    return idx, refs


@pytest.mark.parametrize(
    "original_to_input",
    [
        np.eye(3),
        np.array([[0.125, 0.0, -3.0], [0.0, 0.125, -2.5], [0.0, 0.0, 1.0]]),  # resize 1/8, crop
        np.array([[-0.1, 0.0, 19.0], [0.0, 0.11, -1.0], [0.0, 0.0, 1.0]]),  # horizontal flip + resize
    ],
    ids=["identity", "resize_crop", "flip"],
)
@torch.no_grad()
def test_means_land_on_back_projected_pixel_centres(original_to_input: np.ndarray) -> None:
    torch.manual_seed(0)
    cfg = _small_config()
    model = GaussTR(cfg).eval()
    _zero_offsets(model)
    b, n = 2, 3
    cam2ego, k = _rig(n, seed=1)
    idx, refs = _pixel_centre_refs(n, seed=2)
    depths = np.random.default_rng(3).uniform(1.0, 60.0, (b, n, H, W))  # some beyond depth_max
    out = model(
        torch.randn(b, n, cfg.feature_dim, 3, 5),
        torch.tensor(depths, dtype=torch.float32),
        torch.tensor(k, dtype=torch.float32).expand(b, n, 3, 3),
        torch.tensor(cam2ego, dtype=torch.float32).expand(b, n, 4, 4),
        torch.tensor(original_to_input, dtype=torch.float32).expand(b, n, 3, 3),
        ref_points=torch.tensor(refs, dtype=torch.float32).expand(b, n, QUERIES, 2),
    )
    # Independent expectation, float64, one Gaussian at a time: undo original_to_input, apply K^-1, scale the
    # unit-depth ray by the (clamped) depth of that pixel, then cam2ego.
    expected = np.zeros((b, n * QUERIES, 3))
    for bi in range(b):
        for v in range(n):
            for qi in range(QUERIES):
                col, row = idx[v, qi]
                d = min(depths[bi, v, row, col], cfg.depth_max)
                orig = np.linalg.solve(original_to_input, [col + 0.5, row + 0.5, 1.0])
                ray = np.linalg.solve(k[v], orig / orig[2])
                expected[bi, v * QUERIES + qi] = cam2ego[v, :3, :3] @ (ray * d) + cam2ego[v, :3, 3]
    for layer in out:  # zero offsets: every layer predicts the same means
        np.testing.assert_allclose(layer.means.double().numpy(), expected, atol=5e-3, rtol=1e-5)


@torch.no_grad()
def test_scales_rotations_and_covariances_follow_the_camera() -> None:
    torch.manual_seed(0)
    cfg = _small_config()
    model = GaussTR(cfg).eval()
    _zero_offsets(model)
    b, n = 1, 2
    cam2ego, k = _rig(n, seed=4)
    idx, refs = _pixel_centre_refs(n, seed=5)
    depths = np.random.default_rng(6).uniform(1.0, 40.0, (b, n, H, W))
    g = model(
        torch.randn(b, n, cfg.feature_dim, 3, 5),
        torch.tensor(depths, dtype=torch.float32),
        torch.tensor(k, dtype=torch.float32)[None],
        torch.tensor(cam2ego, dtype=torch.float32)[None],
        torch.eye(3).expand(b, n, 3, 3),
        ref_points=torch.tensor(refs, dtype=torch.float32)[None],
    )[-1]
    lo, hi = cfg.scale_range
    for v in range(n):
        rows = slice(v * QUERIES, (v + 1) * QUERIES)
        # quats (w x y z) are the camera rotation for every Gaussian of the view
        xyzw = g.quats[0, rows][:, [1, 2, 3, 0]].double().numpy()
        expected_rot = np.broadcast_to(cam2ego[v, :3, :3], (QUERIES, 3, 3))
        np.testing.assert_allclose(Rotation.from_quat(xyzw).as_matrix(), expected_rot, atol=1e-5)
        for qi in range(QUERIES):
            col, row = idx[v, qi]
            base = depths[0, v, row, col] * cfg.scale_multiplier / k[v, 0, 0]
            s = g.scales[0, v * QUERIES + qi].double().numpy()
            assert np.all(s >= lo * base * (1 - 1e-5)) and np.all(s <= hi * base * (1 + 1e-5))
            r = cam2ego[v, :3, :3]
            cov = sum(s[a] ** 2 * np.outer(r[:, a], r[:, a]) for a in range(3))
            # float32: every entry is exact to a few ulps of the largest variance (small off-diagonal
            # entries come from cancellation, so a relative bound per entry would be too tight)
            np.testing.assert_allclose(g.covariances[0, v * QUERIES + qi].double().numpy(), cov, rtol=1e-4,
                                       atol=1e-6 * np.abs(cov).max())
    assert torch.all((g.opacities > 0) & (g.opacities < 1))
    assert g.features.shape == (b, n * QUERIES, cfg.feature_dim)


@torch.no_grad()
def test_depth_offset_scales_the_ray() -> None:
    """dz moves the Gaussian along its ray: depth = sampled depth x (1 + dz)."""
    torch.manual_seed(0)
    cfg = _small_config(num_layers=1)
    model = GaussTR(cfg).eval()
    _zero_offsets(model)
    dz = 0.25
    with torch.no_grad():
        model.heads[0].offset.fc2.bias[2] = dz
    b, n = 1, 1
    _, refs = _pixel_centre_refs(n, seed=7)
    cam2ego = torch.eye(4)[None, None]
    k = torch.tensor([[[[100.0, 0, 80], [0, 100, 45], [0, 0, 1]]]])
    depths = torch.full((b, n, H, W), 8.0)
    g = model(torch.randn(b, n, cfg.feature_dim, 3, 5), depths, k, cam2ego, torch.eye(3)[None, None],
              ref_points=torch.tensor(refs, dtype=torch.float32)[None])[-1]
    # camera == ego frame here, so optical z is the third coordinate
    torch.testing.assert_close(g.means[0, :, 2], torch.full((QUERIES,), 8.0 * (1 + dz)))
    assert math.isclose(float(g.means[0, :, 2].std()), 0.0, abs_tol=1e-6)
