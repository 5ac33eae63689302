"""Occ3D-nuScenes ground truth: class names and the `gts/<scene>/<token>/labels.npz` files.

Each file holds `semantics` (uint8 class ids 0-17), `mask_lidar` and `mask_camera` (0/1), all
(200, 200, 16) indexed [x, y, z] in the sample's ego frame (see `gausstr_core.grid`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OCC3D_CLASSES = (
    "others",
    "barrier",
    "bicycle",
    "bus",
    "car",
    "construction_vehicle",
    "motorcycle",
    "pedestrian",
    "traffic_cone",
    "trailer",
    "truck",
    "driveable_surface",
    "other_flat",
    "sidewalk",
    "terrain",
    "manmade",
    "vegetation",
    "free",
)
FREE_ID = 17
OCC3D_SHAPE = (200, 200, 16)


@dataclass
class Occ3DLabels:
    """semantics (X, Y, Z) uint8; mask_camera, mask_lidar (X, Y, Z) bool."""

    semantics: np.ndarray
    mask_camera: np.ndarray
    mask_lidar: np.ndarray


def occ3d_path(occ_root: str | Path, scene: str, sample_token: str) -> Path:
    """`<occ_root>/<scene>/<sample_token>/labels.npz`."""
    return Path(occ_root) / scene / sample_token / "labels.npz"


def load_occ3d(path: str | Path, shape: tuple[int, int, int] = OCC3D_SHAPE) -> Occ3DLabels:
    """Read one labels.npz; a missing file, missing array or wrong shape raises naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Occ3D labels not found: {path}")
    try:
        with np.load(path) as data:
            arrays = {}
            for key in ("semantics", "mask_camera", "mask_lidar"):
                if key not in data:
                    raise KeyError(f"Occ3D labels {path} lack array '{key}' (has {sorted(data.files)})")
                arrays[key] = data[key]
    except (OSError, ValueError) as err:
        raise ValueError(f"Occ3D labels {path} cannot be read: {err}") from err
    for key, value in arrays.items():
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"Occ3D labels {path}: '{key}' has shape {tuple(value.shape)}, expected {tuple(shape)}")
    semantics = arrays["semantics"]
    if semantics.size and int(semantics.max()) > FREE_ID:
        raise ValueError(f"Occ3D labels {path}: semantics hold id {int(semantics.max())} > {FREE_ID}")
    return Occ3DLabels(
        semantics=semantics.astype(np.uint8),
        mask_camera=arrays["mask_camera"].astype(bool),
        mask_lidar=arrays["mask_lidar"].astype(bool),
    )


def write_occ3d(path: str | Path, labels: Occ3DLabels) -> None:
    """Write labels.npz atomically (temporary file + rename), masks as uint8 like the release."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        np.savez_compressed(
            handle,
            semantics=labels.semantics.astype(np.uint8),
            mask_lidar=labels.mask_lidar.astype(np.uint8),
            mask_camera=labels.mask_camera.astype(np.uint8),
        )
    os.replace(tmp, path)
