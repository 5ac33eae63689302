"""Camera rigs for the synthetic world; the default is the nuScenes rig (docs/model_and_data_facts.md section 3)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gausstr_core.data.nuscenes import pose_matrix

# name: (f, cx, cy, translation xyz m, rotation w x y z), sensor -> ego, for 1600 x 900 images.
_NUSCENES_CALIBRATION = {
    "CAM_FRONT": (1266.42, 816.27, 491.51, (1.701, 0.016, 1.511), (0.4998, -0.5030, 0.4998, -0.4974)),
    "CAM_FRONT_RIGHT": (1260.85, 807.97, 495.33, (1.551, -0.493, 1.496), (0.2060, -0.2027, 0.6825, -0.6714)),
    "CAM_FRONT_LEFT": (1272.60, 826.62, 479.75, (1.524, 0.495, 1.509), (0.6757, -0.6736, 0.2121, -0.2112)),
    "CAM_BACK": (809.22, 829.22, 481.78, (0.028, 0.003, 1.579), (0.5038, -0.4974, -0.4942, 0.5045)),
    "CAM_BACK_LEFT": (1256.74, 792.11, 492.78, (1.036, 0.485, 1.591), (0.6924, -0.7032, -0.1165, 0.1120)),
    "CAM_BACK_RIGHT": (1259.51, 807.25, 501.20, (1.015, -0.481, 1.562), (0.1228, -0.1324, -0.7004, 0.6905)),
}
NUSCENES_SIZE = (1600, 900)  # width, height
LIDAR_PERIOD_S = 0.05  # one 20 Hz lidar revolution: cameras fire as it sweeps their view


@dataclass
class CameraSpec:
    """One camera: intrinsics (3, 3) pixels, cam2ego (4, 4) optical -> ego, image width x height."""

    name: str
    intrinsics: np.ndarray
    cam2ego: np.ndarray
    width: int
    height: int

    def trigger_offset(self) -> float:
        """Seconds after the lidar passes straight ahead at which this camera fires: the clockwise
        azimuth of its optical axis (seen from above, from -10 deg) as a fraction of one lidar
        revolution (nuScenes rig: 0 to ~42 ms)."""
        axis = self.cam2ego[:3, 2]
        start = math.radians(10.0)
        clockwise = (-math.atan2(axis[1], axis[0]) + start) % (2 * math.pi) - start
        return clockwise / (2 * math.pi) * LIDAR_PERIOD_S


def nuscenes_rig(width: int = NUSCENES_SIZE[0], height: int = NUSCENES_SIZE[1]) -> list[CameraSpec]:
    """The six nuScenes cameras with intrinsics scaled to width x height images."""
    sx, sy = width / NUSCENES_SIZE[0], height / NUSCENES_SIZE[1]
    rig = []
    for name, (f, cx, cy, translation, rotation) in _NUSCENES_CALIBRATION.items():
        k = np.array([[f * sx, 0.0, cx * sx], [0.0, f * sy, cy * sy], [0.0, 0.0, 1.0]])
        rig.append(CameraSpec(name, k, pose_matrix(list(translation), list(rotation)), width, height))
    return rig
