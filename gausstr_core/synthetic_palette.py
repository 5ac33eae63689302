"""Class colours of the synthetic world, shared by its renderer (gausstr_core.data.synthetic) and
its feature provider (gausstr_core.foundation.synthetic), which both depend on this module.

Not the display colours (gausstr_core.palette): these are chosen so that any two stay >= 40 RGB
levels apart under every brightness factor in `BRIGHTNESS_RANGE` (shading x texture), so pixels
decode back to their class after shading, texture noise and JPEG compression.

`PALETTE_CLASSES[i]` is the class with Occ3D id i (gausstr_core.data.occ3d.OCC3D_CLASSES, checked
by test/test_data_synthetic_world.py), except id 17 ("free" in Occ3D), which is the sky in images
and class maps. The table lists them itself so that this module imports no data layer.
"""

from __future__ import annotations

import torch

SKY_ID = 17
BRIGHTNESS_RANGE = (0.6, 1.12)  # product of shading and texture factors used by the renderer

# Row order = class id.
CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "others": (163, 9, 230),
    "barrier": (227, 15, 139),
    "bicycle": (224, 223, 112),
    "bus": (223, 127, 58),
    "car": (30, 60, 220),
    "construction_vehicle": (101, 230, 158),
    "motorcycle": (131, 93, 230),
    "pedestrian": (230, 30, 30),
    "traffic_cone": (133, 226, 11),
    "trailer": (227, 225, 204),
    "truck": (0, 226, 115),
    "driveable_surface": (90, 90, 95),
    "other_flat": (46, 150, 224),
    "sidewalk": (210, 120, 150),
    "terrain": (228, 217, 10),
    "manmade": (1, 217, 207),
    "vegetation": (40, 140, 40),
    "sky": (140, 200, 250),
}
PALETTE_CLASSES = tuple(CLASS_COLORS)


def palette_tensor(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(18, 3) RGB in [0, 1], row i = class id i (17 = sky)."""
    return torch.tensor([CLASS_COLORS[name] for name in PALETTE_CLASSES], dtype=dtype) / 255.0
