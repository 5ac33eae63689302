"""A generated synthetic tree: the official devkit loads it, the reader sees nuScenes timing and
calibration, and the Occ3D labels agree with the images through the reader's geometry."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gausstr_core.config import load_config
from gausstr_core.data.cache import read_cache_map, read_cache_meta
from gausstr_core.data.nuscenes import NuScenesReader
from gausstr_core.data.occ3d import FREE_ID, OCC3D_SHAPE, load_occ3d, occ3d_path
from gausstr_core.data.synthetic.generate import SynthOptions, generate_dataset
from gausstr_core.grid import VoxelGrid

VERSION = "v1.0-mini"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    summary = generate_dataset(out, SynthOptions(scenes=2, samples_per_scene=2, seed=3))
    assert summary.samples == 4 and summary.images == 2 * 7 * 6  # (1 keyframe gap x 6 + 1) frames x 6 cams
    assert len(summary.classes) >= 8, summary.classes
    return out


@pytest.fixture(scope="module")
def reader(tree: Path) -> NuScenesReader:
    return NuScenesReader(tree, VERSION)


def test_official_devkit_loads_tree(tree: Path) -> None:
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes(version=VERSION, dataroot=str(tree), verbose=False)
    assert len(nusc.scene) == 2 and len(nusc.sample) == 4
    sample = nusc.sample[0]
    assert set(sample["data"]) == {
        "CAM_FRONT",
        "CAM_FRONT_RIGHT",
        "CAM_FRONT_LEFT",
        "CAM_BACK",
        "CAM_BACK_LEFT",
        "CAM_BACK_RIGHT",
    }
    path, _, k = nusc.get_sample_data(sample["data"]["CAM_FRONT"])
    assert Path(path).is_file() and np.asarray(k).shape == (3, 3)
    assert nusc.get("sample_data", sample["data"]["CAM_FRONT"])["filename"].startswith("samples/CAM_FRONT/")


def test_splits_and_records(reader: NuScenesReader, tree: Path) -> None:
    train, val = reader.split_samples("train"), reader.split_samples("val")
    assert len(train) == 2 and len(val) == 2 and not set(train) & set(val)
    assert reader.split_samples("mini_train") == []  # official split names work, no synthetic scene in them
    with pytest.raises(ValueError, match="unknown split 'nope'"):
        reader.split_samples("nope")
    record = reader.sample_record(train[1])
    assert record.scene == reader.split_scenes("train")[0]
    front = record.cameras["CAM_FRONT"]
    np.testing.assert_allclose(record.ego2global, front.ego2global)
    assert Path(front.image_path).is_absolute() and Path(front.image_path).is_file()
    assert (front.width, front.height) == (160, 90)
    np.testing.assert_allclose(front.intrinsics[0, 0], 1266.42 * 0.1, rtol=1e-6)
    # cam2ego: CAM_FRONT looks along ego +x (optical z), its image x runs to ego -y.
    np.testing.assert_allclose(front.cam2ego[:3, 2], [1, 0, 0], atol=0.02)
    np.testing.assert_allclose(front.cam2ego[:3, 0], [0, -1, 0], atol=0.02)
    np.testing.assert_allclose(front.cam2ego[:3, 3], [1.701, 0.016, 1.511], atol=1e-6)
    stamps = sorted(c.timestamp for c in record.cameras.values())
    assert 35_000 <= stamps[-1] - stamps[0] <= 50_000  # six cameras staggered like nuScenes


def test_sweeps_are_12hz_chains_with_2hz_keyframes(reader: NuScenesReader) -> None:
    scene = reader.split_scenes("train")[0]
    entries = reader.sweeps(scene)
    assert len(entries) == 7 * 6
    assert [e["record"].timestamp for e in entries] == sorted(e["record"].timestamp for e in entries)
    front = [e for e in entries if e["camera"] == "CAM_FRONT"]
    gaps = np.diff([e["record"].timestamp for e in front])
    np.testing.assert_allclose(gaps, 1e6 / 12, atol=2)
    keys = [e for e in front if e["is_key_frame"]]
    assert len(keys) == 2 and keys[1]["record"].timestamp - keys[0]["record"].timestamp == pytest.approx(5e5, abs=2)
    assert all("/sweeps/" in e["record"].image_path for e in front if not e["is_key_frame"])
    # Every image has its own ego pose: the ego moves between consecutive frames.
    moves = [
        np.linalg.norm(b["record"].ego2global[:3, 3] - a["record"].ego2global[:3, 3]) for a, b in zip(front, front[1:])
    ]
    assert min(moves) > 0.2


def test_occupancy_caches_and_config(reader: NuScenesReader, tree: Path) -> None:
    token = reader.split_samples("val")[0]
    record = reader.sample_record(token)
    labels = load_occ3d(occ3d_path(tree / "gts", record.scene, token))
    assert labels.semantics.shape == OCC3D_SHAPE
    assert labels.mask_camera.mean() > 0.05 and labels.mask_lidar.mean() > 0.01
    assert (labels.semantics[labels.mask_camera] != FREE_ID).any()
    cfg = load_config(tree / "gausstr_synthetic.yaml")
    assert cfg.data.dataroot == str(tree) and cfg.data.input_size == (90, 160)
    meta = read_cache_meta(cfg.data.cache_root, "synthetic")
    assert meta["channels"] == cfg.model.feature_dim and meta["input_size"] == [90, 160]
    cam = record.cameras["CAM_BACK"]
    feats = read_cache_map(cfg.data.cache_root, "synthetic", cam.sample_data_token, (cfg.model.feature_dim, 9, 16))
    assert feats.dtype == np.float16
    depth = read_cache_map(cfg.data.cache_root, "synthetic_depth", cam.sample_data_token, (90, 160)).astype(np.float32)
    truth = read_cache_map(cfg.data.cache_root, "synthetic_depth_gt", cam.sample_data_token, (90, 160)).astype(
        np.float32
    )
    hit = truth > 0
    ratio = depth[hit] / truth[hit]
    assert 0.7 < np.median(ratio) < 1.3 and np.std(np.log(ratio)) > 0.005  # an estimate, not the truth
    assert (depth[~hit] > 50).all()  # sky: far, finite


def _rot_z(degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    out = np.eye(4)
    out[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    return out


def _project(points: np.ndarray, sample2cam: np.ndarray, intrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 3) -> continuous pixel coordinates (N, 2) and optical depth (N,)."""
    p = points @ sample2cam[:3, :3].T + sample2cam[:3, 3]
    uv = p @ intrinsics.T
    return uv[:, :2] / np.maximum(uv[:, 2:], 1e-6), p[:, 2]


def _agreement(reader: NuScenesReader, tree: Path, yaws: tuple[float, ...]) -> dict[float, dict[str, float]]:
    """Per yaw error and camera: the fraction of labelled camera-visible voxel centres whose
    projection, with the reader's intrinsics, cam2ego (rotated by the yaw error about ego z) and
    per-image ego poses, lands on a pixel of the voxel's class (any of the 4 pixel centres around
    the projected point). Voxels count for a camera when that camera sees them: the true
    projection is no more than 0.2 m behind the surface in the camera's depth map."""
    centres = VoxelGrid().centers(dtype=torch.float64).numpy()
    counts: dict[float, dict[str, list[int]]] = {yaw: {} for yaw in yaws}
    cache = tree / "cache"
    for token in reader.split_samples("train") + reader.split_samples("val"):
        record = reader.sample_record(token)
        labels = load_occ3d(occ3d_path(tree / "gts", record.scene, token))
        keep = labels.mask_camera & (labels.semantics != FREE_ID)
        points, classes = centres[keep], labels.semantics[keep].astype(int)
        for name, cam in record.cameras.items():
            shape = (cam.height, cam.width)
            class_map = read_cache_map(cache, "synthetic_classes", cam.sample_data_token, shape).astype(int)
            depth = read_cache_map(cache, "synthetic_depth_gt", cam.sample_data_token, shape).astype(np.float64)
            sample2cam = np.linalg.inv(cam.ego2global @ cam.cam2ego) @ record.ego2global
            uv, z = _project(points, sample2cam, cam.intrinsics)
            col, row = np.floor(uv).astype(int).T
            inside = (z > 0.1) & (col >= 0) & (col < cam.width) & (row >= 0) & (row < cam.height)
            surface = depth[row.clip(0, cam.height - 1), col.clip(0, cam.width - 1)]
            seen = inside & ((surface == 0) | (z <= surface + 0.2))
            for yaw in yaws:
                uv, z = _project(
                    points[seen],
                    np.linalg.inv(cam.ego2global @ _rot_z(yaw) @ cam.cam2ego) @ record.ego2global,
                    cam.intrinsics,
                )
                u0, v0 = np.floor(uv - 0.5).astype(int).T
                ok = (z > 0.1) & (u0 >= 0) & (u0 + 1 < cam.width) & (v0 >= 0) & (v0 + 1 < cam.height)
                agree = np.zeros(len(z), dtype=bool)
                for du in (0, 1):
                    for dv in (0, 1):
                        agree[ok] |= class_map[v0[ok] + dv, u0[ok] + du] == classes[seen][ok]
                total = counts[yaw].setdefault(name, [0, 0])
                total[0] += int(agree.sum())
                total[1] += len(z)
    assert all(n > 100 for _, n in counts[0.0].values()), counts[0.0]
    return {yaw: {name: a / n for name, (a, n) in per_cam.items()} for yaw, per_cam in counts.items()}


def test_visible_labels_project_onto_their_class(reader: NuScenesReader, tree: Path) -> None:
    result = _agreement(reader, tree, (0.0, 2.0))
    exact, yawed = result[0.0], result[2.0]
    for name in exact:
        assert exact[name] >= 0.95, (name, exact)
        # A 2 degree calibration error must show: at least 3x the disagreement, and below 90 %.
        assert 1 - yawed[name] >= 3 * (1 - exact[name]), (name, exact[name], yawed[name])
        assert yawed[name] < 0.9, (name, yawed)
