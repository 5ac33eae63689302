"""Occ3D-style ray-cast camera mask of the synthetic world, on hand-made scenes with known visibility."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gausstr_core.data.synthetic.generate import WORLD_META, world_camera_mask
from gausstr_core.data.synthetic.occupancy import camera_visibility_raycast
from gausstr_core.grid import VoxelGrid

# 8 x 4 x 4 voxels of 1 m: x -0.5..7.5, y and z -2..2; voxel (i, j, k) has centre (i, j - 1.5, k - 1.5).
GRID = VoxelGrid(range=(-0.5, -2.0, -2.0, 7.5, 2.0, 2.0), size=1.0)
K = np.array([[10.0, 0.0, 50.0], [0.0, 10.0, 50.0], [0.0, 0.0, 1.0]])  # 100 x 100 px, +-79 deg
IMAGE = (100, 100)


def _camera(x: float, y: float, z: float) -> np.ndarray:
    """Optical frame -> ego at (x, y, z), looking along ego +x."""
    cam2ego = np.eye(4)
    cam2ego[:3, :3] = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    cam2ego[:3, 3] = (x, y, z)
    return cam2ego


def _reference(occupied: np.ndarray, cam2ego: np.ndarray) -> np.ndarray:
    """The same rule by brute force: each in-view centre's segment sampled every 0.1 mm."""
    centres = GRID.centers(dtype=torch.float64).numpy().reshape(-1, 3)
    origin = cam2ego[:3, 3]
    cam = (centres - origin) @ cam2ego[:3, :3]
    u, v = cam[:, 0] / cam[:, 2] * K[0, 0] + K[0, 2], cam[:, 1] / cam[:, 2] * K[1, 1] + K[1, 2]
    in_view = (cam[:, 2] > 0.1) & (u >= 0) & (u < IMAGE[1]) & (v >= 0) & (v < IMAGE[0])
    start = tuple(np.floor((origin - GRID.min_corner) / GRID.size).astype(int))
    visible = np.zeros(GRID.dims, dtype=bool)
    t = np.linspace(0.0, 1.0, 100_001)[:, None]
    for centre in centres[in_view]:
        cells = np.floor((origin + t * (centre - origin) - GRID.min_corner) / GRID.size).astype(int)
        keep = np.ones(len(cells), dtype=bool)
        keep[1:] = np.any(cells[1:] != cells[:-1], axis=1)
        for cell in map(tuple, cells[keep]):
            if cell == start:
                continue
            visible[cell] = True
            if occupied[cell]:
                break
    return visible


def test_a_wall_hides_everything_behind_it() -> None:
    occupied = np.zeros(GRID.dims, dtype=bool)
    occupied[5] = True  # a wall filling the layer x = 5
    seen = camera_visibility_raycast(GRID, _camera(0.1, 0.2, 0.3), K, IMAGE, occupied)
    assert seen[1:6].all()  # the free space in front and the wall's own voxels
    assert not seen[6:].any()  # behind the wall


def test_one_voxel_casts_a_shadow() -> None:
    occupied = np.zeros(GRID.dims, dtype=bool)
    occupied[3, 2, 2] = True  # centre (3, 0.5, 0.5), straight ahead of a camera at (0, 0.5, 0.5)
    cam2ego = _camera(0.0, 0.5, 0.5)
    seen = camera_visibility_raycast(GRID, cam2ego, K, IMAGE, occupied)
    assert seen[3, 2, 2] and seen[1, 2, 2] and seen[2, 2, 2]
    assert not seen[4:, 2, 2].any()  # the voxels straight behind it
    assert seen[4:, 0, 0].all()  # off to the side: seen past it
    assert not seen[0, 2, 2] and not seen[0, 0].any()  # the camera's own voxel; beside it, out of view


def test_matches_brute_force_on_a_cluttered_scene() -> None:
    rng = np.random.default_rng(0)
    occupied = rng.random(GRID.dims) < 0.15
    cam2ego = _camera(0.23, -0.31, 0.17)
    occupied[0, 1, 2] = True  # the camera's own voxel never occludes
    seen = camera_visibility_raycast(GRID, cam2ego, K, IMAGE, occupied)
    expected = _reference(occupied, cam2ego)
    assert seen.sum() > 20 and (~seen).sum() > 20
    np.testing.assert_array_equal(seen, expected)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="outside the grid"):
        camera_visibility_raycast(GRID, _camera(-3.0, 0.0, 0.0), K, IMAGE, np.zeros(GRID.dims, dtype=bool))
    with pytest.raises(ValueError, match="shape"):
        camera_visibility_raycast(GRID, _camera(0.0, 0.0, 0.0), K, IMAGE, np.zeros((2, 2, 2), dtype=bool))


def test_world_meta_names_the_rule(tmp_path) -> None:
    with pytest.raises(ValueError, match="regenerate"):
        world_camera_mask(tmp_path)
    (tmp_path / WORLD_META).write_text(json.dumps({"camera_mask": "depth_tolerance"}))
    assert world_camera_mask(tmp_path) == "depth_tolerance"
    (tmp_path / WORLD_META).write_text(json.dumps({"camera_mask": "lidar"}))
    with pytest.raises(ValueError, match="unknown camera_mask"):
        world_camera_mask(tmp_path)
