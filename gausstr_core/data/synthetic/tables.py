"""Writes nuScenes v1.0 tables (the JSON files the official devkit loads) for camera-only data.

Tokens are 32 hex digits derived from names, so a seed reproduces the same tree. As in the real
release, an ego_pose shares its sample_data's token. Annotation tables (instance,
sample_annotation) are written empty; no lidarseg/panoptic tables are written.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gausstr_core.geometry import rotmat_to_quat

_CATEGORIES = (
    "human.pedestrian.adult",
    "vehicle.car",
    "vehicle.truck",
    "vehicle.bus.rigid",
    "vehicle.bicycle",
    "vehicle.motorcycle",
    "vehicle.construction",
    "vehicle.trailer",
    "movable_object.barrier",
    "movable_object.trafficcone",
    "static_object.bicycle_rack",
)
_ATTRIBUTES = ("vehicle.parked", "vehicle.stopped", "vehicle.moving", "pedestrian.standing", "pedestrian.moving")
_VISIBILITY = (("1", "v0-40"), ("2", "v40-60"), ("3", "v60-80"), ("4", "v80-100"))


def make_token(*parts: Any) -> str:
    """Deterministic 32-hex-digit token from its parts."""
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


def pose_fields(a_to_b: np.ndarray) -> dict[str, list[float]]:
    """(4, 4) transform -> nuScenes {'translation': [x, y, z], 'rotation': [w, x, y, z]}."""
    quat = rotmat_to_quat(torch.as_tensor(a_to_b[:3, :3], dtype=torch.float64))
    return {"translation": [float(v) for v in a_to_b[:3, 3]], "rotation": [float(v) for v in quat]}


class NuScenesTables:
    """Accumulates table records; `write(dataroot, version)` stores them as `<version>/*.json`."""

    def __init__(self, seed: int):
        self.seed = seed
        self.tables: dict[str, list[dict[str, Any]]] = {
            "category": [{"token": make_token(seed, "category", n), "name": n, "description": n} for n in _CATEGORIES],
            "attribute": [
                {"token": make_token(seed, "attribute", n), "name": n, "description": n} for n in _ATTRIBUTES
            ],
            "visibility": [
                {"token": t, "level": lvl, "description": f"visibility of whole object is {lvl}"}
                for t, lvl in _VISIBILITY
            ],
            "instance": [],
            "sample_annotation": [],
            "sensor": [],
            "calibrated_sensor": [],
            "ego_pose": [],
            "log": [],
            "scene": [],
            "sample": [],
            "sample_data": [],
            "map": [],
        }
        self._sensors: dict[str, str] = {}

    def token(self, *parts: Any) -> str:
        return make_token(self.seed, *parts)

    def add_log(self, name: str, date: str) -> str:
        token = self.token("log", name)
        self.tables["log"].append(
            {
                "token": token,
                "logfile": name,
                "vehicle": "synthetic-ego",
                "date_captured": date,
                "location": "synthetic-town",
            }
        )
        return token

    def add_map(self, filename: str) -> str:
        """One semantic-prior map record covering every log written so far."""
        token = self.token("map", filename)
        self.tables["map"].append(
            {
                "token": token,
                "log_tokens": [log["token"] for log in self.tables["log"]],
                "category": "semantic_prior",
                "filename": filename,
            }
        )
        return token

    def add_calibration(self, log_token: str, channel: str, intrinsics: np.ndarray, cam2ego: np.ndarray) -> str:
        if channel not in self._sensors:
            self._sensors[channel] = self.token("sensor", channel)
            self.tables["sensor"].append({"token": self._sensors[channel], "channel": channel, "modality": "camera"})
        token = self.token("calibrated_sensor", log_token, channel)
        self.tables["calibrated_sensor"].append(
            {
                "token": token,
                "sensor_token": self._sensors[channel],
                **pose_fields(cam2ego),
                "camera_intrinsic": [[float(v) for v in row] for row in intrinsics],
            }
        )
        return token

    def add_scene(
        self, name: str, log_token: str, sample_tokens: list[str], timestamps: list[int], description: str
    ) -> str:
        token = self.token("scene", name)
        for i, (sample, stamp) in enumerate(zip(sample_tokens, timestamps)):
            self.tables["sample"].append(
                {
                    "token": sample,
                    "timestamp": stamp,
                    "scene_token": token,
                    "prev": sample_tokens[i - 1] if i > 0 else "",
                    "next": sample_tokens[i + 1] if i + 1 < len(sample_tokens) else "",
                }
            )
        self.tables["scene"].append(
            {
                "token": token,
                "log_token": log_token,
                "nbr_samples": len(sample_tokens),
                "name": name,
                "first_sample_token": sample_tokens[0],
                "last_sample_token": sample_tokens[-1],
                "description": description,
            }
        )
        return token

    def add_image_chain(self, frames: list[dict[str, Any]]) -> None:
        """One camera's images in time order; each frame: token, sample_token, calibrated_sensor_token,
        timestamp, is_key_frame, width, height, filename, ego2global (4, 4)."""
        for i, f in enumerate(frames):
            self.tables["ego_pose"].append(
                {"token": f["token"], "timestamp": f["timestamp"], **pose_fields(f["ego2global"])}
            )
            self.tables["sample_data"].append(
                {
                    "token": f["token"],
                    "sample_token": f["sample_token"],
                    "ego_pose_token": f["token"],
                    "calibrated_sensor_token": f["calibrated_sensor_token"],
                    "timestamp": f["timestamp"],
                    "fileformat": "jpg",
                    "is_key_frame": f["is_key_frame"],
                    "height": f["height"],
                    "width": f["width"],
                    "filename": f["filename"],
                    "prev": frames[i - 1]["token"] if i > 0 else "",
                    "next": frames[i + 1]["token"] if i + 1 < len(frames) else "",
                }
            )

    def write(self, dataroot: Path, version: str) -> None:
        folder = Path(dataroot) / version
        folder.mkdir(parents=True, exist_ok=True)
        for name, records in self.tables.items():
            (folder / f"{name}.json").write_text(json.dumps(records, indent=0))
