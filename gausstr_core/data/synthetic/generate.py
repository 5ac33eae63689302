"""Writes a complete synthetic nuScenes-format tree: tables, JPEGs, Occ3D gts, caches, splits, config.

Layout under `out` (the devkit's dataroot):
  <version>/*.json, <version>/splits.json     nuScenes v1.0 tables + custom splits (_write_splits)
  samples/<CAM>/<log>__<CAM>__<us>.jpg        keyframe images (2 Hz)
  sweeps/<CAM>/<log>__<CAM>__<us>.jpg         non-keyframe images (12 Hz in between)
  maps/<token>.png                            placeholder semantic-prior map (the devkit needs one)
  gts/<scene>/<sample_token>/labels.npz       Occ3D labels in the sample's (CAM_FRONT) ego frame
  cache/<kind>/<sample_data_token>.npy        keyframe caches at the input size + meta.json:
      synthetic (C, h, w) provider features, synthetic_depth (H, W) depth estimate,
      synthetic_depth_gt (H, W) true depth (0 = sky), synthetic_classes (H, W) class map
  gausstr_synthetic.yaml                      a Config pointing at all of the above
  synthetic_world.json                        what made the world: the SynthOptions, the camera-mask
                                              rule (occupancy.CAMERA_MASK_RULES) and the splits
Cameras fire 12 times a second, staggered like nuScenes (rig.CameraSpec.trigger_offset); the
ego pose of every image is the ego's pose at that image's own timestamp.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gausstr_core.config import Config, save_config
from gausstr_core.data.augment import plan_resize_crop
from gausstr_core.data.cache import write_cache_map, write_cache_meta
from gausstr_core.data.occ3d import FREE_ID, Occ3DLabels, occ3d_path, write_occ3d
from gausstr_core.data.synthetic.occupancy import (
    CAMERA_MASK_RULES,
    LIDAR_ORIGIN,
    camera_visibility,
    camera_visibility_raycast,
    lidar_rays,
    lidar_visibility,
    occupancy_semantics,
)
from gausstr_core.data.synthetic.raycast import RayCaster
from gausstr_core.data.synthetic.render import CameraView, decode_jpeg, encode_jpeg, estimate_depth, render_view
from gausstr_core.data.synthetic.rig import CameraSpec, nuscenes_rig
from gausstr_core.data.synthetic.scene import World, generate_world
from gausstr_core.data.synthetic.tables import NuScenesTables
from gausstr_core.foundation.synthetic import SyntheticFeatureProvider
from gausstr_core.grid import VoxelGrid

KEYFRAME_PERIOD_S = 0.5
SWEEPS_PER_KEYFRAME = 6  # 12 Hz cameras
LIDAR_RANGE_M = 70.0
CACHE_KINDS = ("synthetic", "synthetic_depth", "synthetic_depth_gt", "synthetic_classes")
WORLD_META = "synthetic_world.json"
SELECT_SPLIT = "val_select"  # scenes for choosing a checkpoint during training, apart from train and val
_EPOCH_US = 1_735_689_600_000_000  # 2025-01-01 00:00:00 UTC


@dataclass
class SynthOptions:
    """What to generate. image_size (W, H) of the originals; input_size (H, W) of the caches
    (None: originals scaled to <= 896 wide, rounded down to whole patches); camera_mask: the rule
    of mask_camera (occupancy.CAMERA_MASK_RULES)."""

    scenes: int = 2
    samples_per_scene: int = 3
    seed: int = 0
    image_size: tuple[int, int] = (160, 90)
    input_size: tuple[int, int] | None = None
    version: str = "v1.0-mini"
    sweeps: bool = True
    feature_dim: int = 64
    patch_size: int = 10
    jpeg_quality: int = 90
    rig: list[CameraSpec] | None = None
    camera_mask: str = "raycast"

    def cache_input_size(self) -> tuple[int, int]:
        if self.input_size is not None:
            return tuple(self.input_size)
        width, height = self.image_size
        scale = min(1.0, 896 / width)
        p = self.patch_size
        return (int(height * scale) // p * p, int(width * scale) // p * p)


@dataclass
class SynthSummary:
    dataroot: Path
    version: str
    config_path: Path
    scenes: list[str] = field(default_factory=list)
    samples: int = 0
    images: int = 0
    classes: list[int] = field(default_factory=list)  # Occ3D ids in camera-visible gts voxels
    seconds: float = 0.0


def generate_dataset(out: str | Path, options: SynthOptions) -> SynthSummary:
    """Generate the tree described in the module docstring under `out`.

    Runs with one torch thread (restored afterwards): the work is many mid-sized tensor ops, for
    which intra-op threads cost far more than they give, worst on a busy machine.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _generate(Path(out), options)
    finally:
        torch.set_num_threads(threads)


def _generate(out: Path, options: SynthOptions) -> SynthSummary:
    start = time.perf_counter()
    out = Path(out).resolve()
    if options.scenes < 1 or options.samples_per_scene < 1:
        raise ValueError(
            f"gausstr-synth: need >= 1 scene and sample, got {options.scenes}, {options.samples_per_scene}"
        )
    if (out / options.version).exists():
        raise FileExistsError(f"gausstr-synth: {out / options.version} already exists; choose another --out")
    rig = options.rig or nuscenes_rig(*options.image_size)
    input_size = options.cache_input_size()
    if min(input_size) < options.patch_size:
        raise ValueError(f"gausstr-synth: input size {input_size} is smaller than one patch ({options.patch_size})")
    if options.camera_mask not in CAMERA_MASK_RULES:
        raise ValueError(
            f"gausstr-synth: camera mask rule must be one of {CAMERA_MASK_RULES}, got {options.camera_mask!r}"
        )
    tables = NuScenesTables(options.seed)
    provider = SyntheticFeatureProvider(options.feature_dim, options.patch_size, seed=options.seed)
    summary = SynthSummary(out, options.version, out / "gausstr_synthetic.yaml")
    classes: set[int] = set()
    for index in range(options.scenes):
        writer = _SceneWriter(out, options, rig, tables, provider, index, input_size)
        writer.run()
        summary.scenes.append(writer.name)
        summary.samples += options.samples_per_scene
        summary.images += writer.images
        classes |= writer.classes

    map_path = Path("maps") / f"{tables.token('map-file')}.png"
    (out / map_path).parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (16, 16)).save(out / map_path)
    tables.add_map(str(map_path))
    tables.write(out, options.version)
    splits = _write_splits(out / options.version / "splits.json", summary.scenes)
    _write_world_meta(out / WORLD_META, options, splits)
    _write_cache_metas(out / "cache", options, input_size)
    save_config(_config(out, options, rig, input_size), summary.config_path)
    summary.classes = sorted(classes)
    summary.seconds = time.perf_counter() - start
    return summary


class _SceneWriter:
    """Renders and writes one scene."""

    def __init__(
        self,
        out: Path,
        options: SynthOptions,
        rig: list[CameraSpec],
        tables: NuScenesTables,
        provider: SyntheticFeatureProvider,
        index: int,
        input_size: tuple[int, int],
    ):
        self.out, self.options, self.rig, self.tables, self.provider = out, options, rig, tables, provider
        self.index = index
        self.name = f"synth-{options.seed:03d}-{index:04d}"
        self.log = f"s{options.seed:03d}-2025-01-01-00-{index:02d}-00+0000"
        self.rng = np.random.default_rng([options.seed, index])
        self.world: World = generate_world(self.rng, (options.samples_per_scene - 1) * KEYFRAME_PERIOD_S)
        self.caster = RayCaster(self.world)
        self.grid = VoxelGrid()
        self.resizes = [plan_resize_crop((c.height, c.width), input_size) for c in rig]
        self.pose_camera = next((i for i, c in enumerate(rig) if c.name == "CAM_FRONT"), 0)
        self.images = 0
        self.classes: set[int] = set()

    def run(self) -> None:
        opts = self.options
        log_token = self.tables.add_log(self.log, "2025-01-01")
        calib = [self.tables.add_calibration(log_token, c.name, c.intrinsics, c.cam2ego) for c in self.rig]
        base_us = _EPOCH_US + self.index * 3_600_000_000
        step = SWEEPS_PER_KEYFRAME if opts.sweeps else 1
        n_frames = (opts.samples_per_scene - 1) * step + 1
        samples = [self.tables.token("sample", self.name, j) for j in range(opts.samples_per_scene)]
        chains: list[list[dict]] = [[] for _ in self.rig]
        for f in range(n_frames):
            t_frame = f * KEYFRAME_PERIOD_S / step
            key = f % step == 0
            keyframe = math.ceil(f / step)  # sweeps belong to the next keyframe's sample
            views, tokens, poses = [], [], []
            for c, cam in enumerate(self.rig):
                t = t_frame + cam.trigger_offset()
                stamp = base_us + round(t * 1e6)
                ego2road = self.world.path.ego2road(t)
                noise = _generator(opts.seed, self.index, f, c)
                view = render_view(self.caster, cam.intrinsics, ego2road @ cam.cam2ego, cam.width, cam.height, noise)
                token = self.tables.token("sample_data", self.name, cam.name, f)
                filename = f"{'samples' if key else 'sweeps'}/{cam.name}/{self.log}__{cam.name}__{stamp}.jpg"
                jpeg = encode_jpeg(view.rgb, opts.jpeg_quality)
                (self.out / filename).parent.mkdir(parents=True, exist_ok=True)
                (self.out / filename).write_bytes(jpeg)
                chains[c].append(
                    {
                        "token": token,
                        "sample_token": samples[keyframe],
                        "calibrated_sensor_token": calib[c],
                        "timestamp": stamp,
                        "is_key_frame": key,
                        "width": cam.width,
                        "height": cam.height,
                        "filename": filename,
                        "ego2global": self.world.road2global @ ego2road,
                    }
                )
                views.append((view, jpeg))
                tokens.append(token)
                poses.append(ego2road)
                self.images += 1
            if key:
                self._keyframe(
                    samples[keyframe], views, tokens, poses, _generator(opts.seed, self.index, f, len(self.rig))
                )
        for chain in chains:
            self.tables.add_image_chain(chain)
        stamps = [base_us + round(j * KEYFRAME_PERIOD_S * 1e6) for j in range(opts.samples_per_scene)]
        self.tables.add_scene(self.name, log_token, samples, stamps, f"synthetic street, seed {opts.seed}")

    def _keyframe(
        self,
        sample: str,
        views: list[tuple[CameraView, bytes]],
        tokens: list[str],
        poses: list[np.ndarray],
        depth_noise: torch.Generator,
    ) -> None:
        ego2road = poses[self.pose_camera]
        road2ego = np.linalg.inv(ego2road)
        semantics = occupancy_semantics(self.world, ego2road, self.grid)

        mask_camera = np.zeros(self.grid.dims, dtype=bool)
        occupied = semantics != FREE_ID
        for cam, (view, _), cam_pose in zip(self.rig, views, poses):
            cam2ego = road2ego @ cam_pose @ cam.cam2ego
            if self.options.camera_mask == "raycast":
                mask_camera |= camera_visibility_raycast(
                    self.grid, cam2ego, cam.intrinsics, (cam.height, cam.width), occupied
                )
            else:
                mask_camera |= camera_visibility(self.grid, cam2ego, cam.intrinsics, view.depth)
        lidar_o, lidar_d, elevations = lidar_rays()
        hits = self.caster.cast(
            _transform(ego2road, lidar_o), lidar_d @ torch.as_tensor(ego2road[:3, :3], dtype=torch.float32).T
        )
        ranges = torch.where(hits.distance <= LIDAR_RANGE_M, hits.distance, torch.inf).reshape(lidar_d.shape[:2])
        mask_lidar = lidar_visibility(self.grid, LIDAR_ORIGIN, ranges, elevations)

        write_occ3d(occ3d_path(self.out / "gts", self.name, sample), Occ3DLabels(semantics, mask_camera, mask_lidar))
        visible = semantics[mask_camera]
        self.classes |= {int(c) for c in np.unique(visible) if c != FREE_ID}

        cache = self.out / "cache"
        images = torch.stack([rc.image(decode_jpeg(jpeg)) / 255 for rc, (_, jpeg) in zip(self.resizes, views)])
        features = self.provider(images)
        for rc, (view, _), token, feature in zip(self.resizes, views, tokens, features):
            write_cache_map(cache, "synthetic", token, feature)
            write_cache_map(cache, "synthetic_depth", token, rc.depth(estimate_depth(view.depth, depth_noise)))
            write_cache_map(cache, "synthetic_depth_gt", token, rc.depth(view.depth))
            write_cache_map(cache, "synthetic_classes", token, rc.labels(view.classes))


def _generator(*parts: int) -> torch.Generator:
    """A torch generator seeded from several integers (seed, scene, frame, camera)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(parts)).generate_state(1)[0]))


def _transform(a_to_b: np.ndarray, points: torch.Tensor) -> torch.Tensor:
    m = torch.as_tensor(a_to_b, dtype=torch.float32)
    return points @ m[:3, :3].T + m[:3, 3]


def _write_splits(path: Path, scenes: list[str]) -> dict[str, list[str]]:
    """train / val (held out, scored) / val_select (for choosing checkpoints), returned as written.

    From 3 scenes on, the last max(1, n // 13) scenes are val_select, and of the other m scenes the
    last max(1, m // 4) are val (13 scenes: train 0-8, val 9-11, val_select 12; a 12-scene world
    without val_select had the same train and val). Fewer scenes: one scene is all three splits;
    two are train and val, with val_select = val.
    """
    n = len(scenes)
    n_select = max(1, n // 13) if n >= 3 else 0
    rest = scenes[: n - n_select]
    n_val = 0 if len(rest) == 1 else max(1, len(rest) // 4)
    train = rest[: len(rest) - n_val]
    val = rest[len(rest) - n_val :] or rest
    splits = {"train": train, "val": val, SELECT_SPLIT: scenes[n - n_select :] if n_select else val}
    path.write_text(json.dumps(splits, indent=2))
    return splits


def _write_world_meta(path: Path, options: SynthOptions, splits: dict[str, list[str]]) -> None:
    fields = {k: v for k, v in dataclasses.asdict(options).items() if k != "rig"}
    meta = {
        "camera_mask": options.camera_mask,
        "options": fields,
        "custom_rig": options.rig is not None,
        "splits": splits,
    }
    tmp = path.with_name(path.name + ".tmp")  # written last and atomically: its presence marks a whole world
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, path)


def world_camera_mask(dataroot: str | Path) -> str:
    """The camera-mask rule recorded in a generated world's meta; ValueError when it records none
    (a world generated before the rule was recorded, or no synthetic world)."""
    path = Path(dataroot) / WORLD_META
    if not path.is_file():
        raise ValueError(
            f"{dataroot} has no {WORLD_META}: not a synthetic world, or one generated before its "
            "camera-mask rule was recorded; regenerate it"
        )
    rule = json.loads(path.read_text()).get("camera_mask")
    if rule not in CAMERA_MASK_RULES:
        raise ValueError(f"{path}: unknown camera_mask {rule!r}, expected one of {CAMERA_MASK_RULES}")
    return rule


def _write_cache_metas(root: Path, options: SynthOptions, input_size: tuple[int, int]) -> None:
    common = {"input_size": list(input_size), "source_size": [options.image_size[1], options.image_size[0]]}
    write_cache_meta(
        root,
        "synthetic",
        {
            **common,
            "map": "feature",
            "provider": "synthetic",
            "channels": options.feature_dim,
            "patch_size": options.patch_size,
            "seed": options.seed,
        },
    )
    write_cache_meta(root, "synthetic_depth", {**common, "map": "depth", "provider": "synthetic depth estimate"})
    write_cache_meta(
        root, "synthetic_depth_gt", {**common, "map": "depth", "provider": "synthetic ground truth", "invalid": 0}
    )
    write_cache_meta(
        root,
        "synthetic_classes",
        {**common, "map": "segmentation", "provider": "synthetic ground truth", "classes": "Occ3D ids, 17 = sky"},
    )


def _config(out: Path, options: SynthOptions, rig: list[CameraSpec], input_size: tuple[int, int]) -> Config:
    config = Config()
    data = config.data
    data.dataroot, data.version = str(out), options.version
    data.occ_root, data.cache_root = str(out / "gts"), str(out / "cache")
    data.cameras = tuple(c.name for c in rig)
    data.image_size = (options.image_size[1], options.image_size[0])
    data.input_size = input_size
    data.feature_kind, data.depth_kind = "synthetic", "synthetic_depth"
    data.feature_provider = {
        "name": "synthetic",
        "feature_dim": options.feature_dim,
        "patch_size": options.patch_size,
        "seed": options.seed,
    }
    config.model.feature_dim, config.model.patch_size = options.feature_dim, options.patch_size
    config.inference.text_encoder = {"name": "synthetic", "feature_dim": options.feature_dim, "seed": options.seed}
    return config
