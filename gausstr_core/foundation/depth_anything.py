"""Metric Depth Anything (transformers `AutoModelForDepthEstimation`) as a depth provider."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gausstr_core.foundation.frozen import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FrozenModel,
    check_images,
    check_intrinsics,
    normalize,
)
from gausstr_core.foundation.weights import WeightsNotFoundError, looks_like_path, require_path

DEPTH_ANYTHING_HOW_TO_GET = (
    "Download a metric Depth Anything model folder (config.json + model.safetensors), e.g. "
    "https://huggingface.co/depth-anything/Depth-Anything-V2-Metric-Outdoor-Large-hf, and set the spec's "
    "'weights' to that folder; with internet access 'weights' may be the hub id itself."
)


class DepthAnythingProvider(FrozenModel):
    """Frozen metric Depth Anything: images (B, 3, H, W) -> depth (B, H, W), m.

    Images are ImageNet-normalised and resized (bicubic) so the shorter side is `process_size`,
    both sides rounded to a multiple of the backbone patch (the model's own pre-processing); the
    prediction is resized back (bilinear). The model takes no focal length, so `intrinsics` are
    only checked: its metric scale is the one it learned (e.g. the Outdoor model: 80 m max).
    Relative (disparity) models are refused.
    """

    def __init__(self, weights: str | None = None, device: torch.device | str = "cpu", process_size: int = 518) -> None:
        super().__init__()
        from transformers import AutoModelForDepthEstimation

        if weights is None or looks_like_path(str(weights)):
            folder = require_path(
                weights, "Depth Anything (metric) model folder", DEPTH_ANYTHING_HOW_TO_GET, is_dir=True
            )
            self.model = AutoModelForDepthEstimation.from_pretrained(str(folder), local_files_only=True)
        else:
            try:
                self.model = AutoModelForDepthEstimation.from_pretrained(str(weights))
            except OSError as err:
                raise WeightsNotFoundError(
                    f"Depth Anything '{weights}' could not be loaded ({err}). {DEPTH_ANYTHING_HOW_TO_GET}"
                ) from err
        kind = getattr(self.model.config, "depth_estimation_type", None)
        if kind != "metric":
            raise ValueError(
                f"depth_anything: {weights} predicts '{kind}' depth; use a metric model (depth_estimation_type: metric)"
            )
        self.multiple = int(self.model.config.backbone_config.patch_size)
        self.process_size = int(process_size)
        self.freeze(device)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
        check_images(images, "depth_anything")
        check_intrinsics(intrinsics, images.shape[0], "depth_anything")
        height, width = images.shape[-2:]
        scale = self.process_size / min(height, width)
        size = tuple(
            max(self.multiple, round(side * scale / self.multiple) * self.multiple) for side in (height, width)
        )
        x = normalize(images.to(self.device, torch.float32), IMAGENET_MEAN, IMAGENET_STD)
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
        depth = self.model(pixel_values=x).predicted_depth
        return F.interpolate(depth[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0]
