"""Display colours: the usual Occ3D-nuScenes palette, plus stable colours for any other class name.

For showing results (RViz messages, pictures), so a class looks the same everywhere. The synthetic
world's renderer has its own palette (gausstr_core.synthetic_palette), chosen for telling
classes apart in rendered pixels rather than for display.
"""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Sequence

import numpy as np

from gausstr_core.data.occ3d import OCC3D_CLASSES

# RGB per Occ3D id 0..17 (the colours commonly used for Occ3D / nuScenes-lidarseg figures).
OCC3D_COLORS = np.array(
    [
        [0, 0, 0], [255, 120, 50], [255, 192, 203], [255, 255, 0], [0, 150, 245], [0, 255, 255],
        [200, 180, 0], [255, 0, 0], [255, 240, 150], [135, 60, 0], [160, 32, 240], [255, 0, 255],
        [139, 137, 137], [75, 0, 75], [150, 240, 80], [230, 230, 250], [0, 175, 0], [255, 255, 255],
    ],
    dtype=np.uint8,
)

_BY_NAME = dict(zip(OCC3D_CLASSES, OCC3D_COLORS))


def name_color(name: str) -> np.ndarray:
    """(3,) uint8 RGB: the Occ3D colour for an Occ3D class name, else a stable saturated colour."""
    if name in _BY_NAME:
        return _BY_NAME[name].copy()
    hue = int.from_bytes(hashlib.md5(name.encode()).digest()[:2], "little") / 65536.0
    return np.array([round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.75, 0.95)], dtype=np.uint8)


def class_colors(class_names: Sequence[str]) -> np.ndarray:
    """(C, 3) uint8 RGB, row i for class_names[i]."""
    return np.stack([name_color(n) for n in class_names]) if class_names else np.zeros((0, 3), np.uint8)
