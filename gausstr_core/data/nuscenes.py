"""nuScenes v1.0 camera records through the official nuscenes-devkit.

Splits come from `nuscenes.utils.splits` (train, val, test, mini_train, mini_val, ...) plus any
scene listed under the same split name in `<dataroot>/<version>/splits.json` (the devkit's custom
split file; the synthetic world writes one). `find_version` picks the version folder when the
configured one is missing and the dataroot holds exactly one. Poses are float64 numpy: `cam2ego` maps the optical
camera frame to the ego frame, `ego2global` the ego frame to the global frame, m.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gausstr_core.config import NUSCENES_CAMERAS
from gausstr_core.errors import UnknownNameError, UserError
from gausstr_core.geometry import make_transform, quat_to_rotmat

NUSCENES_TABLES = (
    "category",
    "attribute",
    "visibility",
    "instance",
    "sensor",
    "calibrated_sensor",
    "ego_pose",
    "log",
    "scene",
    "sample",
    "sample_data",
    "sample_annotation",
    "map",
)


@dataclass
class CameraRecord:
    """One camera image: intrinsics (3, 3) original pixels; cam2ego, ego2global (4, 4) float64."""

    sample_data_token: str
    image_path: str  # absolute
    intrinsics: np.ndarray
    cam2ego: np.ndarray
    ego2global: np.ndarray  # ego pose at this image's timestamp
    timestamp: int  # microseconds
    width: int
    height: int


@dataclass
class SampleRecord:
    """One keyframe: ego2global (4, 4) float64 from the CAM_FRONT image's ego pose."""

    token: str
    scene: str
    timestamp: int  # microseconds
    ego2global: np.ndarray
    cameras: dict[str, CameraRecord] = field(default_factory=dict)


def pose_matrix(translation: list[float], rotation_wxyz: list[float]) -> np.ndarray:
    """nuScenes translation + w x y z quaternion -> (4, 4) float64 transform."""
    rotation = quat_to_rotmat(torch.tensor(rotation_wxyz, dtype=torch.float64))
    return make_transform(rotation, torch.tensor(translation, dtype=torch.float64)).numpy()


def find_version(dataroot: str | Path, preferred: str) -> str:
    """`preferred` if `<dataroot>/<preferred>` exists, else the one `v1.0-*` folder there; UserError otherwise."""
    root = Path(dataroot).expanduser()
    if (root / preferred).is_dir():
        return preferred
    if not root.is_dir():
        raise FileNotFoundError(f"nuScenes dataroot not found: {root}")
    versions = sorted(p.name for p in root.glob("v1.0-*") if p.is_dir())
    if len(versions) != 1:
        raise UserError(f"{root} has no version folder {preferred} and {len(versions)} other v1.0-* folders "
                        f"({versions}); name one with --version / data.version")
    return versions[0]


class NuScenesReader:
    """Camera-centric view of a nuScenes tree (`<dataroot>/<version>/*.json`)."""

    def __init__(self, dataroot: str | Path, version: str, cameras: tuple[str, ...] = NUSCENES_CAMERAS):
        self.dataroot = Path(dataroot).resolve()
        self.version = version
        self.cameras = tuple(cameras)
        table_root = self.dataroot / version
        if not table_root.is_dir():
            found = sorted(p.name for p in self.dataroot.glob("v1.0-*") if p.is_dir())
            raise FileNotFoundError(f"nuScenes version folder not found: {table_root} (found: {found or 'none'})")
        for name in NUSCENES_TABLES:
            path = table_root / f"{name}.json"
            if not path.is_file():
                raise FileNotFoundError(f"nuScenes table missing: {path}")
        from nuscenes.nuscenes import NuScenes  # heavy import, only when a tree is opened

        try:
            self.nusc = NuScenes(version=version, dataroot=str(self.dataroot), verbose=False)
        except json.JSONDecodeError as err:
            raise ValueError(f"nuScenes tables under {table_root} hold invalid JSON: {err}") from err
        except AssertionError as err:
            raise FileNotFoundError(f"nuScenes devkit cannot open {table_root}: {err}") from err
        self._scenes = {scene["name"]: scene for scene in self.nusc.scene}

    @property
    def scene_names(self) -> list[str]:
        return list(self._scenes)

    def split_scenes(self, split: str) -> list[str]:
        """Names of the scenes of `split` present in this tree, in table order."""
        from nuscenes.utils.splits import create_splits_scenes

        wanted: set[str] = set()
        known = False
        predefined = create_splits_scenes()
        if split in predefined:
            wanted.update(predefined[split])
            known = True
        custom_path = self.dataroot / self.version / "splits.json"
        if custom_path.is_file():
            try:
                custom = json.loads(custom_path.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f"split file {custom_path} is not valid JSON: {err}") from err
            if split in custom:
                if not isinstance(custom[split], list):
                    raise ValueError(f"split file {custom_path}: '{split}' must be a list of scene names")
                wanted.update(custom[split])
                known = True
        if not known:
            raise ValueError(f"unknown split {split!r}: not a nuScenes split {sorted(predefined)} nor in {custom_path}")
        return [name for name in self._scenes if name in wanted]

    def split_samples(self, split: str) -> list[str]:
        """Sample tokens of `split`, scene by scene in time order."""
        return [token for name in self.split_scenes(split) for token in self.scene_samples(name)]

    def scene_samples(self, scene_name: str) -> list[str]:
        """Sample tokens of one scene in time order."""
        token = self._scene(scene_name)["first_sample_token"]
        tokens = []
        while token:
            tokens.append(token)
            token = self.nusc.get("sample", token)["next"]
        return tokens

    def sample_record(self, token: str) -> SampleRecord:
        """Keyframe `token` with its cameras' image paths, calibration and poses."""
        try:
            sample = self.nusc.get("sample", token)
        except KeyError as err:
            raise UnknownNameError(f"sample token {token} not in {self.dataroot / self.version}/sample.json") from err
        cameras = {}
        for cam in self.cameras:
            if cam not in sample["data"]:
                raise UnknownNameError(f"sample {token} has no {cam} image (has {sorted(sample['data'])})")
            cameras[cam] = self.camera_record(sample["data"][cam])
        pose_cam = "CAM_FRONT" if "CAM_FRONT" in sample["data"] else self.cameras[0]
        pose_record = cameras.get(pose_cam) or self.camera_record(sample["data"][pose_cam])
        scene = self.nusc.get("scene", sample["scene_token"])["name"]
        return SampleRecord(token, scene, int(sample["timestamp"]), pose_record.ego2global.copy(), cameras)

    def camera_record(self, sample_data_token: str) -> CameraRecord:
        """One camera image (keyframe or sweep)."""
        sd = self.nusc.get("sample_data", sample_data_token)
        calib = self.nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        pose = self.nusc.get("ego_pose", sd["ego_pose_token"])
        if not calib["camera_intrinsic"]:
            raise ValueError(f"sample_data {sample_data_token} ({sd['channel']}) is not a camera image")
        return CameraRecord(
            sample_data_token=sample_data_token,
            image_path=str(self.dataroot / sd["filename"]),
            intrinsics=np.asarray(calib["camera_intrinsic"], dtype=np.float64),
            cam2ego=pose_matrix(calib["translation"], calib["rotation"]),
            ego2global=pose_matrix(pose["translation"], pose["rotation"]),
            timestamp=int(sd["timestamp"]),
            width=int(sd["width"]),
            height=int(sd["height"]),
        )

    def sweeps(self, scene_name: str) -> list[dict[str, Any]]:
        """Every image of the scene's cameras (keyframes and sweeps), merged in time order.

        Each entry: {"camera": channel, "is_key_frame": bool, "sample_token": str,
        "record": CameraRecord}.
        """
        first = self.nusc.get("sample", self._scene(scene_name)["first_sample_token"])
        entries = []
        for cam in self.cameras:
            if cam not in first["data"]:
                raise UnknownNameError(f"scene {scene_name}: first sample {first['token']} has no {cam} image")
            token = first["data"][cam]
            while self.nusc.get("sample_data", token)["prev"]:
                token = self.nusc.get("sample_data", token)["prev"]
            while token:
                sd = self.nusc.get("sample_data", token)
                entries.append(
                    {
                        "camera": cam,
                        "is_key_frame": bool(sd["is_key_frame"]),
                        "sample_token": sd["sample_token"],
                        "record": self.camera_record(token),
                    }
                )
                token = sd["next"]
        entries.sort(key=lambda e: (e["record"].timestamp, self.cameras.index(e["camera"])))
        return entries

    def _scene(self, scene_name: str) -> dict[str, Any]:
        if scene_name not in self._scenes:
            raise UnknownNameError(f"scene {scene_name!r} not in {self.dataroot / self.version}/scene.json")
        return self._scenes[scene_name]
