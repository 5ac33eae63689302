"""Transforms, projection, back-projection and augmentation matrices vs explicit per-point formulas."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from gausstr_core.geometry import (
    make_transform,
    pixel_to_input_matrix,
    project_points,
    resize_crop_matrix,
    transform_points,
    unproject_pixels,
)


def _rig(views: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cam2ego = np.tile(np.eye(4), (views, 1, 1))
    cam2ego[:, :3, :3] = Rotation.random(views, random_state=seed).as_matrix()
    cam2ego[:, :3, 3] = rng.uniform(-2, 2, (views, 3))
    k = np.array([[[f, 0.0, rng.uniform(700, 900)], [0.0, f * 1.01, rng.uniform(400, 500)], [0, 0, 1]]
                  for f in rng.uniform(800, 1300, views)])
    aug = np.array([resize_crop_matrix((s, s * 1.02), (rng.uniform(0, 30), rng.uniform(0, 20))).double().numpy()
                    for s in rng.uniform(0.3, 0.6, views)])
    return cam2ego, k, aug


def test_make_transform_and_transform_points_match_loops() -> None:
    rng = np.random.default_rng(0)
    rot = Rotation.random(4, random_state=0).as_matrix()
    trans = rng.normal(size=(4, 3))
    t = make_transform(torch.tensor(rot), torch.tensor(trans))
    assert t.shape == (4, 4, 4)
    np.testing.assert_array_equal(t[:, 3].numpy(), np.tile([0, 0, 0, 1.0], (4, 1)))
    pts = rng.normal(size=(4, 9, 3))
    out = transform_points(t, torch.tensor(pts)).numpy()
    for v in range(4):
        for i in range(9):
            np.testing.assert_allclose(out[v, i], rot[v] @ pts[v, i] + trans[v], atol=1e-12)


def test_project_points_matches_pinhole_loop() -> None:
    views = 3
    cam2ego, k, aug = _rig(views, seed=1)
    rng = np.random.default_rng(2)
    pts = rng.uniform(-30, 30, (views, 50, 3))
    uv, depth = project_points(*(torch.tensor(a) for a in (pts, cam2ego, k, aug)))
    for v in range(views):
        ego2cam = np.linalg.inv(cam2ego[v])
        for i in range(50):
            cam = ego2cam[:3, :3] @ pts[v, i] + ego2cam[:3, 3]
            u0, v0 = k[v, 0, 0] * cam[0] / cam[2] + k[v, 0, 2], k[v, 1, 1] * cam[1] / cam[2] + k[v, 1, 2]
            expected = aug[v] @ [u0, v0, 1.0]  # resize then crop (affine)
            np.testing.assert_allclose(depth[v, i].item(), cam[2], rtol=1e-12)
            np.testing.assert_allclose(uv[v, i].numpy(), expected[:2], rtol=1e-9, atol=1e-6)


def test_unproject_inverts_project_in_front_of_the_camera() -> None:
    views = 4
    cam2ego, k, aug = _rig(views, seed=3)
    rng = np.random.default_rng(4)
    uv = torch.tensor(rng.uniform(0, 400, (views, 30, 2)))
    depth = torch.tensor(rng.uniform(0.5, 60, (views, 30)))
    rig = [torch.tensor(a) for a in (cam2ego, k, aug)]
    pts = unproject_pixels(uv, depth, *rig)
    uv2, depth2 = project_points(pts, *rig)
    torch.testing.assert_close(uv2, uv)
    torch.testing.assert_close(depth2, depth)


def test_unproject_points_lie_on_the_pixel_ray() -> None:
    cam2ego, k, aug = _rig(1, seed=5)
    uv = torch.tensor([[[100.5, 60.5], [3.5, 200.5]]], dtype=torch.float64)
    depth = torch.tensor([[2.0, 7.0]], dtype=torch.float64)
    pts = unproject_pixels(uv, depth, *(torch.tensor(a) for a in (cam2ego, k, aug)))
    for i, d in enumerate((2.0, 7.0)):
        orig = np.linalg.solve(aug[0], [*uv[0, i].tolist(), 1.0])  # network-input -> original pixel
        ray = np.linalg.solve(k[0], orig)
        np.testing.assert_allclose(pts[0, i].numpy(), cam2ego[0, :3, :3] @ (ray * d / ray[2]) + cam2ego[0, :3, 3])


def test_resize_crop_matrix_maps_pixels_like_resizing_then_cropping() -> None:
    m = resize_crop_matrix((0.5, 0.25), crop=(10.0, 4.0))
    for u, v in [(0.0, 0.0), (1600.0, 900.0), (123.5, 456.5)]:
        out = m @ torch.tensor([u, v, 1.0])
        torch.testing.assert_close(out, torch.tensor([0.5 * u - 10.0, 0.25 * v - 4.0, 1.0]))
    torch.testing.assert_close(resize_crop_matrix(0.56), torch.diag(torch.tensor([0.56, 0.56, 1.0])))
    # resizing 1600x900 by 0.56 gives a 896x504 input whose pixel edges map onto the original's
    corner = resize_crop_matrix(0.56) @ torch.tensor([1600.0, 900.0, 1.0])
    torch.testing.assert_close(corner[:2], torch.tensor([896.0, 504.0]))


def test_pixel_to_input_matrix_is_aug_times_k() -> None:
    _, k, aug = _rig(2, seed=6)
    got = pixel_to_input_matrix(torch.tensor(k), torch.tensor(aug)).numpy()
    for v in range(2):
        np.testing.assert_allclose(got[v], aug[v] @ k[v])
