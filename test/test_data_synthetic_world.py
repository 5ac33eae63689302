"""Synthetic world geometry: exact ray casting, culling, Occ3D labels and visibility masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gausstr_core.data.occ3d import FREE_ID, OCC3D_CLASSES
from gausstr_core.data.synthetic.occupancy import camera_visibility, lidar_rays, lidar_visibility, occupancy_semantics
from gausstr_core.data.synthetic.raycast import RayCaster, _hit_box, _hit_cylinder, _hit_ellipsoid
from gausstr_core.data.synthetic.render import pixel_rays
from gausstr_core.data.synthetic.rig import nuscenes_rig
from gausstr_core.data.synthetic.scene import (
    BOX,
    CYLINDER,
    ELLIPSOID,
    EgoPath,
    GroundLayout,
    Primitives,
    World,
    generate_world,
)
from gausstr_core.grid import VoxelGrid
from gausstr_core.synthetic_palette import PALETTE_CLASSES, SKY_ID

CAR, VEG, MANMADE = (OCC3D_CLASSES.index(n) for n in ("car", "vegetation", "manmade"))


def _world(rows: list[tuple]) -> World:
    """rows: (kind, cls, centre xyz, half xyz, yaw)."""
    kind = np.array([r[0] for r in rows])
    return World(
        solids=Primitives(
            kind,
            np.array([r[2] for r in rows], float),
            np.array([r[3] for r in rows], float),
            np.array([r[4] for r in rows], float),
            np.array([r[1] for r in rows]),
        ),
        ground=GroundLayout(road_half_width=5.0, median_half_width=0.0, sidewalk_width=3.0, patches=np.zeros((0, 5))),
        path=EgoPath(0.0, 0.0, 5.0, 0.0, 0.0),
        sun=np.array([0.0, 0.0, 1.0]),
        road2global=np.eye(4),
    )


def _cast(world: World, origin: tuple, dirs: list[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
    d = torch.tensor(dirs, dtype=torch.float32)
    d = d / d.norm(dim=1, keepdim=True)
    hits = RayCaster(world).cast(torch.tensor(origin).expand(len(dirs), 3)[None].float(), d[None])
    return hits.distance, hits.cls


def test_exact_distances_to_each_primitive_and_the_ground() -> None:
    world = _world(
        [
            (BOX, CAR, (10.0, 0.0, 1.0), (1.0, 2.0, 1.0), math.radians(30)),
            (CYLINDER, VEG, (0.0, 10.0, 1.0), (0.5, 0.5, 1.0), 0.0),
            (ELLIPSOID, MANMADE, (0.0, -10.0, 1.0), (2.0, 1.0, 3.0), math.radians(90)),
        ]
    )
    dist, cls = _cast(world, (0.0, 0.0, 1.0), [(1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, -1), (0, 0, 1), (-1, 0, 0)])
    box_face = 10.0 - 1.0 / math.cos(math.radians(30))  # rotated slab: the ray meets the x-face obliquely
    expected = torch.tensor([box_face, 9.5, 8.0, 1.0, math.inf, math.inf])  # ellipsoid yawed 90: y radius 2
    torch.testing.assert_close(dist, expected, rtol=1e-5, atol=1e-4)
    assert cls.tolist()[:3] == [CAR, VEG, MANMADE] and cls[4] == SKY_ID
    assert cls[3] == OCC3D_CLASSES.index("driveable_surface")
    # Cylinder cap from above and a ray passing beside it.
    dist, cls = _cast(world, (0.0, 10.0, 5.0), [(0, 0, -1), (1, 0, -1e-9)])
    assert dist[0] == pytest.approx(3.0, abs=1e-4) and cls[0] == VEG and cls[1] == SKY_ID


def test_culling_never_drops_a_hit() -> None:
    world = generate_world(np.random.default_rng(5), 1.0)
    caster = RayCaster(world)
    cam = nuscenes_rig(48, 27)[3]
    origins, dirs, _ = pixel_rays(cam.intrinsics, world.path.ego2road(0.3) @ cam.cam2ego, 48, 27)
    fast = caster.cast(origins, dirs)
    # Brute force: every ray against every solid.
    o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    best = torch.full((len(o),), math.inf)
    for kind, hit in ((BOX, _hit_box), (CYLINDER, _hit_cylinder), (ELLIPSOID, _hit_ellipsoid)):
        prims = (caster.kind == kind).nonzero().squeeze(1)
        pairs_o = o.repeat_interleave(len(prims), 0)
        pairs_d = d.repeat_interleave(len(prims), 0)
        lo, ld = caster._local(pairs_o, pairs_d, prims.repeat(len(o)))
        best = torch.minimum(best, hit(lo, ld).reshape(len(o), len(prims)).amin(1))
    ground = torch.where(d[:, 2] < 0, -o[:, 2] / d[:, 2], math.inf)
    torch.testing.assert_close(fast.distance, torch.minimum(best, ground), rtol=1e-5, atol=1e-4)
    normals = fast.normal[torch.isfinite(fast.distance)]
    torch.testing.assert_close(normals.norm(dim=1), torch.ones(len(normals)))
    # Normals face the camera.
    assert ((normals * d[torch.isfinite(fast.distance)]).sum(1) < 1e-4).all()


def test_occupancy_labels_and_visibility() -> None:
    grid = VoxelGrid()
    world = _world([(BOX, CAR, (10.0, 0.0, 0.95), (2.0, 1.0, 1.0), 0.0)])  # x 8..12, y -1..1, z -0.05..1.95
    ego2road = np.eye(4)
    labels = occupancy_semantics(world, ego2road, grid)
    centres = grid.centers(dtype=torch.float64).numpy()
    inside = (np.abs(centres[..., 0] - 10) <= 2) & (np.abs(centres[..., 1]) <= 1) & (centres[..., 2] > -0.05)
    inside &= centres[..., 2] <= 1.95
    assert (labels[inside] == CAR).all() and inside.sum() > 100
    ground = np.isclose(centres[..., 2], 0.0) & ~inside
    road = np.abs(centres[..., 1]) < 5
    assert (labels[ground & road] == OCC3D_CLASSES.index("driveable_surface")).all()
    assert (labels[ground & ~road & (np.abs(centres[..., 1]) < 8)] == OCC3D_CLASSES.index("sidewalk")).all()
    assert (labels[~inside & ~ground] == FREE_ID).all()

    # A camera at the origin looking along +x: the car's front face hides what lies behind it.
    cam = nuscenes_rig(160, 90)[0]
    cam2ego = cam.cam2ego.copy()
    cam2ego[:3, 3] = (0.0, 0.0, 1.0)
    origins, dirs, z = pixel_rays(cam.intrinsics, cam2ego, 160, 90)
    hits = RayCaster(world).cast(origins, dirs)
    depth = torch.where(torch.isfinite(hits.distance), hits.distance * z.reshape(-1), 0.0).reshape(90, 160)
    seen = camera_visibility(grid, cam2ego, cam.intrinsics, depth)

    def idx(x: float, y: float, z: float) -> tuple[int, ...]:
        return tuple(int((v - lo) / grid.size) for v, lo in zip((x, y, z), grid.min_corner))

    assert seen[idx(5.0, 0.1, 1.0)]  # free space in front of the car
    assert seen[idx(8.1, 0.1, 1.0)]  # the car's front voxel
    assert not seen[idx(11.0, 0.1, 1.0)]  # inside / behind the car
    assert not seen[idx(20.0, 0.1, 1.0)]  # hidden behind it
    assert not seen[idx(-5.0, 0.1, 1.0)]  # behind the camera

    lo, ld, elevations = lidar_rays()
    hits = RayCaster(world).cast(lo, ld)
    ranges = hits.distance.reshape(ld.shape[:2])
    lidar = lidar_visibility(grid, tuple(lo[0, 0].tolist()), ranges, elevations)
    assert lidar[idx(8.1, 0.1, 1.0)] and not lidar[idx(20.0, 0.1, 1.0)]
    assert not lidar[idx(0.0, 0.1, 5.0)]  # straight up: no beam


def test_full_resolution_images_make_realistic_jpegs() -> None:
    from gausstr_core.data.synthetic.render import encode_jpeg, render_view

    world = generate_world(np.random.default_rng(0), 1.0)
    cam = nuscenes_rig()[0]
    assert (cam.width, cam.height) == (1600, 900)
    view = render_view(
        RayCaster(world),
        cam.intrinsics,
        world.path.ego2road(0.0) @ cam.cam2ego,
        1600,
        900,
        torch.Generator().manual_seed(0),
    )
    assert len(encode_jpeg(view.rgb, 90)) >= 150_000
    assert len(view.classes.unique()) >= 5


def test_cli_writes_a_tree_and_refuses_to_overwrite(tmp_path, capsys) -> None:
    from gausstr_core.cli.synth import main

    args = ["--out", str(tmp_path), "--scenes", "1", "--samples-per-scene", "1", "--no-sweeps", "--image-size", "64x36"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "wrote 1 samples / 6 images" in printed and "gausstr_synthetic.yaml" in printed
    assert (tmp_path / "v1.0-mini" / "sample.json").is_file() and (tmp_path / "v1.0-mini" / "splits.json").is_file()
    assert len(list((tmp_path / "samples" / "CAM_FRONT").glob("*.jpg"))) == 1
    assert main(args) == 2 and "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--image-size", "64by36"])


def test_palette_class_ids_are_occ3d_ids_with_sky_for_free() -> None:
    assert PALETTE_CLASSES[:SKY_ID] == OCC3D_CLASSES[:SKY_ID] and OCC3D_CLASSES[SKY_ID] == "free"
    assert PALETTE_CLASSES[SKY_ID:] == ("sky",)
