"""Resize + crop of images and per-pixel maps with the matching `original_to_input` matrix.

A `ResizeCrop` resizes the full original frame to `resized` (H, W) and keeps the `out_size` (H, W)
window whose top-left corner sits at `offset` (top, left) of the resized image. Any map that
covers the full original frame (an image, a depth or label map at any resolution, a feature map
at patch resolution) goes through the same two steps, so all stay aligned with
`original_to_input = resize_crop_matrix((sx, sy), (left, top))`, sx = resized W / original W.

Resampling: images bilinear with antialiasing; depth and label maps nearest (pixel-centre
aligned, 'nearest-exact'), so depths are never averaged across object edges and 0 ("no
measurement") stays 0; feature maps bilinear at patch resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gausstr_core.geometry import resize_crop_matrix


@dataclass(frozen=True)
class ResizeCrop:
    """source_size, resized, out_size: (H, W) pixels; offset: (top, left) in resized pixels."""

    source_size: tuple[int, int]
    resized: tuple[int, int]
    offset: tuple[int, int]
    out_size: tuple[int, int]

    def __post_init__(self) -> None:
        (rh, rw), (top, left), (oh, ow) = self.resized, self.offset, self.out_size
        if min(*self.source_size, rh, rw, oh, ow) <= 0:
            raise ValueError(f"ResizeCrop: sizes must be positive, got {self}")
        if top < 0 or left < 0 or top + oh > rh or left + ow > rw:
            raise ValueError(
                f"ResizeCrop: crop window {self.out_size} at {self.offset} leaves resized image {self.resized}"
            )

    @property
    def matrix(self) -> torch.Tensor:
        """original_to_input (3, 3): original pixels -> output pixels."""
        (sh, sw), (rh, rw) = self.source_size, self.resized
        return resize_crop_matrix((rw / sw, rh / sh), (float(self.offset[1]), float(self.offset[0])))

    def image(self, images: torch.Tensor) -> torch.Tensor:
        """(..., C, H, W) full frame at any resolution -> (..., C, out H, out W) float."""
        return self._apply(images.float(), "bilinear", channels=True, stride=1)

    def depth(self, depth: torch.Tensor) -> torch.Tensor:
        """(..., H, W) metres (0 = invalid) -> (..., out H, out W), nearest."""
        return self._apply(depth, "nearest-exact", channels=False, stride=1)

    def labels(self, labels: torch.Tensor) -> torch.Tensor:
        """(..., H, W) class ids -> (..., out H, out W), nearest, same dtype."""
        return self._apply(labels.float(), "nearest-exact", channels=False, stride=1).to(labels.dtype)

    def features(self, features: torch.Tensor, patch_size: int) -> torch.Tensor:
        """(..., C, h, w) full-frame feature map -> (..., C, out H // p, out W // p), bilinear.

        Crop offsets are rounded to whole patches.
        """
        return self._apply(features, "bilinear", channels=True, stride=patch_size)

    def _apply(self, x: torch.Tensor, mode: str, channels: bool, stride: int) -> torch.Tensor:
        min_dims = 3 if channels else 2
        if x.dim() < min_dims:
            raise ValueError(f"ResizeCrop: expected at least {min_dims} dims, got shape {tuple(x.shape)}")
        lead = x.shape[: x.dim() - min_dims]
        flat = x.reshape(-1, *x.shape[-3:]) if channels else x.reshape(-1, 1, *x.shape[-2:])
        rh, rw = (round(v / stride) for v in self.resized)
        top, left = (round(v / stride) for v in self.offset)
        oh, ow = (v // stride for v in self.out_size)
        if tuple(flat.shape[-2:]) != (rh, rw):
            kwargs = {"align_corners": False, "antialias": True} if mode == "bilinear" else {}
            flat = F.interpolate(flat, size=(rh, rw), mode=mode, **kwargs)
        flat = flat[..., top : top + oh, left : left + ow]
        out = flat.reshape(*lead, *flat.shape[-3:]) if channels else flat.reshape(*lead, *flat.shape[-2:])
        return out.contiguous()


def plan_resize_crop(
    source_size: tuple[int, int],
    out_size: tuple[int, int],
    scale: float | None = None,
    offset: tuple[int, int] | None = None,
) -> ResizeCrop:
    """Plan a ResizeCrop from (H, W) source to (H, W) output.

    scale None: resize straight to out_size (no crop; sx and sy may differ slightly).
    scale s: resize to round(s * source), then crop out_size at `offset` (top, left), by default
    centred.
    """
    if scale is None:
        if offset not in (None, (0, 0)):
            raise ValueError("plan_resize_crop: an offset needs a scale (without one nothing is cropped)")
        return ResizeCrop(tuple(source_size), tuple(out_size), (0, 0), tuple(out_size))
    if scale <= 0:
        raise ValueError(f"plan_resize_crop: scale must be positive, got {scale}")
    resized = (round(source_size[0] * scale), round(source_size[1] * scale))
    if offset is None:
        offset = ((resized[0] - out_size[0]) // 2, (resized[1] - out_size[1]) // 2)
    return ResizeCrop(tuple(source_size), resized, tuple(offset), tuple(out_size))
