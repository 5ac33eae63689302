"""Occ3D-style labels of the synthetic world in a sample's ego frame.

Semantics: a voxel takes a solid's class when its centre lies inside that solid (later solids
win); the voxel layer containing the ground plane (ego z = 0) takes the ground class at each
column centre unless a solid fills it; everything else is free (17).

Camera masks, two rules (CAMERA_MASK_RULES; the world's meta records which one made its mask):
  raycast (Occ3D's rule, the default): for every voxel whose centre projects into a camera's image
    in front of it, the line of sight from the camera centre to that voxel centre is traversed
    through the voxel grid cell by cell (3D DDA). The voxels it crosses before the first occupied
    voxel are observed (free), that occupied voxel is observed, the voxels behind it are not (the
    camera's own voxel never occludes). A voxel is camera-visible when any line of any camera
    observes it.
  depth_tolerance (the first rule, kept selectable): a voxel is observed when its centre, looked up
    in the camera's depth image, lies in front of the surface seen at that pixel or at most a
    tolerance behind it; pixels that see sky observe their whole line of sight.
Lidar mask: a voxel is observed when its centre, looked up in the range image, lies in front of
the return seen in that direction or just behind it; directions without a return observe nothing.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gausstr_core.data.occ3d import FREE_ID
from gausstr_core.data.synthetic.scene import BOX, CYLINDER, World
from gausstr_core.grid import VoxelGrid

LIDAR_ORIGIN = (0.943, 0.0, 1.84)  # nuScenes LIDAR_TOP position in the ego frame, m
CAMERA_MASK_RULES = ("raycast", "depth_tolerance")


def occupancy_semantics(world: World, ego2road: np.ndarray, grid: VoxelGrid) -> np.ndarray:
    """(X, Y, Z) uint8 Occ3D ids of the world seen from ego pose ego2road (4, 4)."""
    centres = grid.centers(dtype=torch.float64).numpy()  # (X, Y, Z, 3) ego
    road = centres @ ego2road[:3, :3].T + ego2road[:3, 3]
    labels = np.full(grid.dims, FREE_ID, dtype=np.uint8)
    z_min, size = grid.min_corner[2], grid.size
    ground_layer = math.floor((0.0 - z_min) / size)
    if 0 <= ground_layer < grid.dims[2]:
        labels[:, :, ground_layer] = world.ground.classes(road[:, :, ground_layer, :2])

    s = world.solids
    road2ego = np.linalg.inv(ego2road)
    centre_ego = s.centre @ road2ego[:3, :3].T + road2ego[:3, 3]
    lo = np.asarray(grid.min_corner)
    dims = np.asarray(grid.dims)
    for i in range(len(s)):
        first = np.maximum(np.floor((centre_ego[i] - s.radius[i] - lo) / size).astype(int), 0)
        last = np.minimum(np.ceil((centre_ego[i] + s.radius[i] - lo) / size).astype(int), dims)
        if np.any(first >= last):
            continue
        block = (slice(first[0], last[0]), slice(first[1], last[1]), slice(first[2], last[2]))
        q = road[block] - s.centre[i]
        c, sn = math.cos(s.yaw[i]), math.sin(s.yaw[i])
        q = np.stack([c * q[..., 0] + sn * q[..., 1], -sn * q[..., 0] + c * q[..., 1], q[..., 2]], -1) / s.half[i]
        if s.kind[i] == BOX:
            inside = np.abs(q).max(-1) <= 1
        elif s.kind[i] == CYLINDER:
            inside = (q[..., 0] ** 2 + q[..., 1] ** 2 <= 1) & (np.abs(q[..., 2]) <= 1)
        else:
            inside = (q**2).sum(-1) <= 1
        labels[block][inside] = s.cls[i]
    return labels


def _in_view(
    grid: VoxelGrid, cam2ego: np.ndarray, intrinsics: np.ndarray, image_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Voxels whose centre projects into the (H, W) image at optical z > 0.1 m: flat voxel indices
    (M,), pixel columns u (M,), rows v (M,) and optical z (M,) m."""
    centres = grid.centers().reshape(-1, 3)
    ego2cam = torch.linalg.inv(torch.as_tensor(cam2ego)).float()
    z = centres @ ego2cam[2, :3] + ego2cam[2, 3]
    front = (z > 0.1).nonzero().squeeze(1)
    cam = centres[front] @ ego2cam[:3, :3].T + ego2cam[:3, 3]
    pix = cam @ torch.as_tensor(intrinsics, dtype=torch.float32).T
    u = torch.floor(pix[:, 0] / cam[:, 2]).long()
    v = torch.floor(pix[:, 1] / cam[:, 2]).long()
    height, width = image_size
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    return front[inside], u[inside], v[inside], cam[inside, 2]


def camera_visibility(
    grid: VoxelGrid, cam2ego: np.ndarray, intrinsics: np.ndarray, depth: torch.Tensor, tolerance: float | None = None
) -> np.ndarray:
    """Voxels a camera observes by the depth_tolerance rule: (X, Y, Z) bool.

    depth (H, W): optical z of the surface seen through each pixel centre, 0 = sky; cam2ego maps
    the camera into the frame of the grid. A voxel is observed when its centre projects into the
    image in front of the camera and lies in front of the surface seen at that pixel, or at most
    `tolerance` m behind it (the surface's own voxels; default 0.55 voxel); sky pixels observe
    their whole line.
    """
    tolerance = 0.55 * grid.size if tolerance is None else tolerance
    front, u, v, z_front = _in_view(grid, cam2ego, intrinsics, tuple(depth.shape))
    surface = depth.float()[v, u]
    seen = torch.zeros(grid.dims, dtype=torch.bool).reshape(-1)
    seen[front] = (surface == 0) | (z_front <= surface + tolerance)
    return seen.reshape(grid.dims).numpy()


def camera_visibility_raycast(
    grid: VoxelGrid, cam2ego: np.ndarray, intrinsics: np.ndarray, image_size: tuple[int, int], occupied: np.ndarray
) -> np.ndarray:
    """Voxels a camera observes by Occ3D's ray-casting rule (module docstring): (X, Y, Z) bool.

    cam2ego (4, 4) maps the camera into the frame of the grid, its centre must lie inside the
    grid; intrinsics (3, 3) pixels of an (H, W) = image_size image; occupied (X, Y, Z) bool.
    Every in-view voxel's line of sight is walked by a vectorised Amanatides-Woo DDA from the
    camera's voxel to the voxel itself, observing each voxel it enters; a line stops after the
    first occupied voxel it enters.
    """
    dims = grid.dims
    if tuple(occupied.shape) != dims:
        raise ValueError(f"occupied must have the grid's shape {dims}, got {tuple(occupied.shape)}")
    lo = np.asarray(grid.min_corner, dtype=np.float64)
    origin = (np.asarray(cam2ego, dtype=np.float64)[:3, 3] - lo) / grid.size  # grid units
    if np.any(origin < 0) or np.any(origin >= dims):
        raise ValueError(f"camera centre {np.asarray(cam2ego)[:3, 3].tolist()} lies outside the grid {grid.range}")
    blocking = torch.as_tensor(np.ascontiguousarray(occupied), dtype=torch.bool).reshape(-1)
    targets, *_ = _in_view(grid, cam2ego, intrinsics, image_size)
    strides = torch.tensor([dims[1] * dims[2], dims[2], 1])
    target = torch.stack([targets // strides[0], targets // strides[1] % dims[1], targets % dims[2]], 1)
    start = torch.as_tensor(np.floor(origin), dtype=torch.long)
    o = torch.as_tensor(origin)
    direction = target.double() + 0.5 - o  # (M, 3) grid units, camera -> voxel centre
    step = torch.sign(direction).long()
    left = (target - start) * step  # cells still to cross along each axis, >= 0
    t_delta = 1.0 / direction.abs()  # line parameter per cell along each axis
    t_max = (start + (step > 0)).double().sub(o).div(direction)  # parameter of the next crossing
    t_max = torch.where(left > 0, t_max, torch.inf)
    t_delta = torch.where(left > 0, t_delta, torch.inf)
    steps_left = left.sum(1, keepdim=True)
    visible = torch.zeros(blocking.shape, dtype=torch.bool)
    visible[targets[steps_left[:, 0] == 0]] = True  # voxels in the camera's own voxel
    # One integer and one float table per line, compacted together as lines finish:
    # [flat voxel index, cells left in total, cells left per axis (3), flat-index step per axis (3)]
    flat = (start * strides).sum().expand(len(target), 1)
    ints = torch.cat([flat, steps_left, left, step * strides], 1)[steps_left[:, 0] > 0]
    floats = torch.cat([t_max, t_delta], 1)[steps_left[:, 0] > 0]  # [next crossing (3), per cell (3)]
    while len(ints):
        axis = floats[:, :3].argmin(1, keepdim=True)  # the axis whose cell boundary the line crosses next
        ints[:, 0] += ints[:, 5:8].gather(1, axis)[:, 0]
        ints[:, 1] -= 1
        left_axis = ints[:, 2:5].gather(1, axis) - 1
        ints[:, 2:5].scatter_(1, axis, left_axis)
        t_next = floats[:, :3].gather(1, axis) + floats[:, 3:].gather(1, axis)
        floats[:, :3].scatter_(1, axis, torch.where(left_axis > 0, t_next, torch.inf))
        visible[ints[:, 0]] = True
        keep = (ints[:, 1] > 0) & ~blocking[ints[:, 0]]
        if not bool(keep.all()):
            keep = keep.nonzero()[:, 0]
            ints, floats = ints[keep], floats[keep]
    return visible.reshape(dims).numpy()


def lidar_visibility(
    grid: VoxelGrid, origin: tuple[float, float, float], ranges: torch.Tensor, elevations: torch.Tensor
) -> np.ndarray:
    """Voxels a spinning lidar observes: (X, Y, Z) bool.

    ranges (beams, steps): distance of each return, inf where none; beam b points at elevation
    elevations[b] (rad, evenly spaced, ascending), step a at azimuth 2 pi a / steps. A voxel counts
    when its centre falls in a beam (nearest elevation, within half the beam spacing of the outer
    beams) that returned, no farther than half a voxel diagonal behind the return.
    """
    rel = grid.centers().reshape(-1, 3) - torch.tensor(origin, dtype=torch.float32)
    dist = rel.norm(dim=1)
    elevation = torch.arcsin((rel[:, 2] / dist.clamp(min=1e-6)).clamp(-1, 1))
    azimuth = torch.atan2(rel[:, 1], rel[:, 0]) % (2 * math.pi)
    beams, steps = ranges.shape
    first, last = float(elevations[0]), float(elevations[-1])
    spacing = (last - first) / (beams - 1) if beams > 1 else math.radians(1.0)
    beam_pos = (elevation - first) / spacing
    in_fan = (beam_pos >= -0.5) & (beam_pos <= beams - 0.5)
    beam = torch.round(beam_pos).long().clamp(0, beams - 1)
    step = torch.floor(azimuth / (2 * math.pi) * steps + 0.5).long() % steps
    reach = ranges.float()[beam, step]
    seen = in_fan & torch.isfinite(reach) & (dist <= reach + 0.5 * grid.size * math.sqrt(3))
    return seen.reshape(grid.dims).numpy()


def lidar_rays(beams: int = 32, azimuth_steps: int = 900) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 32-beam spinning lidar at LIDAR_ORIGIN: origins and unit directions (beams, steps, 3) in
    the ego frame, and the beam elevations (beams,) rad."""
    elevation = torch.deg2rad(torch.linspace(-30.67, 10.67, beams))
    azimuth = torch.arange(azimuth_steps) * (2 * math.pi / azimuth_steps)
    el, az = torch.meshgrid(elevation, azimuth, indexing="ij")
    dirs = torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], -1)
    return torch.tensor(LIDAR_ORIGIN).expand_as(dirs).clone(), dirs, elevation
