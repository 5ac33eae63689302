"""Metric3D (v2) from a local torch.hub directory as a depth provider, honouring its canonical focal length.

Metric3D predicts depth for a canonical camera of focal length 1000 px. We feed the image
unchanged in content (no focal-driven rescaling of the input); we rescale the OUTPUT:
depth = canonical_depth * f / 1000, where f = fx of the image as fed to the network, i.e. the
input intrinsics' fx times our horizontal resize factor. This is the recipe of Metric3D's own README.

Hub contract (what the tests' hubconf.py implements as well): `torch.hub.load(hub_dir, entry,
source='local', pretrain=...)` returns a module whose `inference({'input': x})` takes x
(B, 3, h, w) normalised as (RGB 0..255 - mean) / std with Metric3D's mean/std, and returns a
tuple whose first item is canonical depth (B, 1, h, w). Real Metric3D is untested here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gausstr_core.foundation.frozen import FrozenModel, check_images, check_intrinsics, normalize
from gausstr_core.foundation.weights import WeightsNotFoundError, load_state_dict_file, require_path

CANONICAL_FOCAL = 1000.0  # px
METRIC3D_MEAN = (123.675, 116.28, 103.53)  # RGB, 0..255 scale
METRIC3D_STD = (58.395, 57.12, 57.375)
METRIC3D_HOW_TO_GET = (
    "Clone https://github.com/YvanYin/Metric3D (its hubconf.py) and set the spec's 'hub_dir' to the clone, and "
    "download the checkpoint of the chosen entry (e.g. metric_depth_vit_large_800k.pth from "
    "https://huggingface.co/JUGGHM/Metric3D) and set 'weights' to it (or place it in $TORCH_HOME/hub/checkpoints)."
)


class Metric3DProvider(FrozenModel):
    """Frozen Metric3D: images (B, 3, H, W), intrinsics (B, 3, 3) of those images -> depth (B, H, W), m.

    The image is resized (bilinear, aspect kept) to fit `process_size` (h, w), padded
    symmetrically with the mean colour (zero after normalisation), and the prediction is cropped,
    resized back and scaled by f / 1000 as described in the module docstring.
    """

    def __init__(
        self,
        hub_dir: str | None = None,
        entry: str = "metric3d_vit_large",
        weights: str | None = None,
        device: torch.device | str = "cpu",
        process_size: tuple[int, int] = (616, 1064),
    ) -> None:
        super().__init__()
        folder = require_path(hub_dir, "Metric3D torch.hub directory", METRIC3D_HOW_TO_GET, is_dir=True)
        if weights is not None:
            path = require_path(weights, f"Metric3D weights for {entry}", METRIC3D_HOW_TO_GET)
            self.model = torch.hub.load(str(folder), entry, source="local", pretrain=False)
            missing, _ = self.model.load_state_dict(load_state_dict_file(path), strict=False)
            if missing:
                raise ValueError(f"metric3d: {path} lacks {len(missing)} weights of {entry}, e.g. {missing[:3]}")
        else:
            try:
                self.model = torch.hub.load(str(folder), entry, source="local", pretrain=True)
            except (OSError, RuntimeError) as err:
                raise WeightsNotFoundError(
                    f"Metric3D {entry}: pretrained weights unavailable ({err}). {METRIC3D_HOW_TO_GET}"
                ) from err
        self.process_size = (int(process_size[0]), int(process_size[1]))
        self.freeze(device)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
        check_images(images, "metric3d")
        check_intrinsics(intrinsics, images.shape[0], "metric3d")
        height, width = images.shape[-2:]
        target_h, target_w = self.process_size
        scale = min(target_h / height, target_w / width)
        rows, cols = round(height * scale), round(width * scale)
        top, left = (target_h - rows) // 2, (target_w - cols) // 2
        x = F.interpolate(
            images.to(self.device, torch.float32) * 255.0, size=(rows, cols), mode="bilinear", align_corners=False
        )
        x = F.pad(normalize(x, METRIC3D_MEAN, METRIC3D_STD), (left, target_w - cols - left, top, target_h - rows - top))
        output = self.model.inference({"input": x})
        canonical = (output[0] if isinstance(output, (tuple, list)) else output)[
            :, :, top : top + rows, left : left + cols
        ]
        depth = F.interpolate(canonical.float(), size=(height, width), mode="bilinear", align_corners=False)[:, 0]
        focal = intrinsics[:, 0, 0].to(depth) * (cols / width)
        return depth * (focal / CANONICAL_FOCAL).view(-1, 1, 1)
