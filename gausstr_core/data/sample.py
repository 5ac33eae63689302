"""One multi-view sample and its batched form.

Frames: `intrinsics` map the camera's optical frame (z forward, x right, y down) to original
image pixels; `original_to_input` maps original pixels to network-input pixels; `cam2ego` maps the optical
frame to the ego frame (x forward, y left, z up), m.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class Sample:
    """N views of one time step (N = 6 for nuScenes, any N allowed).

    images: (N, 3, H, W) float32 RGB in [0, 1] at network-input size (H, W).
    intrinsics: (N, 3, 3) original-pixel K.
    cam2ego: (N, 4, 4).
    original_to_input: (N, 3, 3) original pixels -> network-input pixels.
    ego2global: (4, 4).
    features: (N, C, h, w) foundation-model feature map, or None.
    depths: (N, H, W) metric depth at network-input size, m, or None.
    segmentation: (N, H, W) int64 2D pseudo labels at network-input size, or None.
    occ_semantics / occ_mask_camera / occ_mask_lidar: (X, Y, Z) uint8 / bool / bool, or None.
    """

    token: str
    scene: str
    timestamp: int  # microseconds
    cameras: tuple[str, ...]
    images: torch.Tensor
    intrinsics: torch.Tensor
    cam2ego: torch.Tensor
    original_to_input: torch.Tensor
    ego2global: torch.Tensor
    features: torch.Tensor | None = None
    depths: torch.Tensor | None = None
    segmentation: torch.Tensor | None = None
    occ_semantics: torch.Tensor | None = None
    occ_mask_camera: torch.Tensor | None = None
    occ_mask_lidar: torch.Tensor | None = None


@dataclass
class Batch:
    """B samples stacked batch-first: the tensor fields of `Sample` with a leading B."""

    tokens: list[str]
    scenes: list[str]
    timestamps: list[int]
    cameras: tuple[str, ...]
    images: torch.Tensor
    intrinsics: torch.Tensor
    cam2ego: torch.Tensor
    original_to_input: torch.Tensor
    ego2global: torch.Tensor
    features: torch.Tensor | None = None
    depths: torch.Tensor | None = None
    segmentation: torch.Tensor | None = None
    occ_semantics: torch.Tensor | None = None
    occ_mask_camera: torch.Tensor | None = None
    occ_mask_lidar: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        moved = {
            f.name: (v.to(device) if isinstance(v, torch.Tensor) else v)
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }
        return Batch(**moved)


_TENSOR_FIELDS = (
    "images",
    "intrinsics",
    "cam2ego",
    "original_to_input",
    "ego2global",
    "features",
    "depths",
    "segmentation",
    "occ_semantics",
    "occ_mask_camera",
    "occ_mask_lidar",
)


def collate_samples(samples: list[Sample]) -> Batch:
    """Stack samples into a Batch; optional fields must be present in all samples or none."""
    if not samples:
        raise ValueError("collate_samples: empty list")
    cameras = samples[0].cameras
    for s in samples:
        if s.cameras != cameras:
            raise ValueError(f"collate_samples: sample {s.token} has cameras {s.cameras}, expected {cameras}")
    stacked = {}
    for name in _TENSOR_FIELDS:
        values = [getattr(s, name) for s in samples]
        present = [v is not None for v in values]
        if all(present):
            stacked[name] = torch.stack(values)
        elif any(present):
            missing = [s.token for s, p in zip(samples, present) if not p]
            raise ValueError(f"collate_samples: field {name} missing in samples {missing}")
        else:
            stacked[name] = None
    return Batch(
        tokens=[s.token for s in samples],
        scenes=[s.scene for s in samples],
        timestamps=[s.timestamp for s in samples],
        cameras=cameras,
        **stacked,
    )
