"""DINOv2 ViT with registers (timm) as a dense feature provider: the Talk2DINO variant's input and target."""

from __future__ import annotations

from typing import Any

import torch

from gausstr_core.foundation.frozen import IMAGENET_MEAN, IMAGENET_STD, FrozenModel, check_images, normalize
from gausstr_core.foundation.weights import WeightsNotFoundError, looks_like_path, require_path

DINOV2_ARCH = "vit_base_patch14_reg4_dinov2"
DINOV2_HOW_TO_GET = (
    "Download model.safetensors from https://huggingface.co/timm/vit_base_patch14_reg4_dinov2.lvd142m "
    "(or Meta's dinov2_vitb14_reg4_pretrain.pth) and set the provider spec's 'weights' to that file; "
    "with internet access 'weights' may instead be the hub id 'timm/vit_base_patch14_reg4_dinov2.lvd142m'."
)


class DINOv2FeatureProvider(FrozenModel):
    """Frozen DINOv2 patch tokens: images (B, 3, H, W) in [0, 1] -> (B, C, H / 14, W / 14).

    The class and register tokens are dropped; tokens are the final-norm outputs. Position
    embeddings are resampled once to `input_size` (H, W) when loading; other sizes that are
    multiples of the patch size also work (resampled per call). Inputs get ImageNet mean/std.
    """

    def __init__(
        self,
        weights: str | None = None,
        arch: str = DINOV2_ARCH,
        input_size: tuple[int, int] = (504, 896),
        device: torch.device | str = "cpu",
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        import timm

        if weights is None or looks_like_path(str(weights)):
            path = require_path(weights, f"DINOv2 weights for {arch}", DINOV2_HOW_TO_GET)
            overlay = {"file": str(path)}
        else:
            overlay = {"hf_hub_id": str(weights)}
        kwargs = dict(model_kwargs or {})
        try:
            self.model = timm.create_model(
                arch,
                pretrained=True,
                pretrained_cfg_overlay=overlay,
                num_classes=0,
                img_size=tuple(input_size),
                dynamic_img_size=True,
                **kwargs,
            )
        except (OSError, ConnectionError) as err:
            if "file" in overlay:
                raise
            raise WeightsNotFoundError(
                f"DINOv2 weights '{weights}' could not be fetched ({err}). {DINOV2_HOW_TO_GET}"
            ) from err
        self.feature_dim: int = int(self.model.embed_dim)
        self.patch_size: int = int(self.model.patch_embed.patch_size[0])
        self.freeze(device)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, "dinov2", self.patch_size)
        x = normalize(images.to(self.device, torch.float32), IMAGENET_MEAN, IMAGENET_STD)
        tokens = self.model.forward_features(x)[:, self.model.num_prefix_tokens :]
        batch, _, height, width = x.shape
        return tokens.transpose(1, 2).reshape(
            batch, self.feature_dim, height // self.patch_size, width // self.patch_size
        )
