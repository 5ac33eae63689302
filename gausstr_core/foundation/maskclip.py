"""Dense CLIP features as FeatUp's MaskCLIP featuriser computes them (open_clip ViT), optionally upsampled
by FeatUp: the FeatUp variant's maps."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gausstr_core.foundation.featup import load_featup_upsampler
from gausstr_core.foundation.frozen import IMAGENET_MEAN, IMAGENET_STD, FrozenModel, check_images, normalize
from gausstr_core.foundation.openclip_loader import DEFAULT_CLIP_MODEL, load_open_clip

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class MaskCLIPFeatureProvider(FrozenModel):
    """Frozen CLIP ViT as a dense feature map: images (B, 3, H, W) -> (B, C, H / s, W / s), C = CLIP embed dim.

    FeatUp's MaskCLIP featuriser: every block runs normally except the last, of which only the
    value path is kept, value = out_proj(v_proj(ln_1(x))), with no residual and no MLP (FeatUp
    found adding it back to x or feeding it through ln_2 and the MLP worse). Patch tokens then go
    through `ln_post` and the visual projection into the joint image-text space, so
    `features @ text_embeddings.T` scores classes. Position embeddings are resampled (bicubic) to
    the input's patch grid. `normalization`: 'imagenet' (default; FeatUp feeds its featurisers
    ImageNet-normalised images, as the authors' maps were made) or 'clip' (the CLIP model's own
    mean/std).

    With `featup_dir`, the CLIP-patch-resolution map is upsampled by FeatUp's JBU upsampler
    (guided by the ImageNet-normalised image) and area-pooled to stride `output_stride`
    (default: the CLIP patch size, as the authors' 27 x 48 maps at 432 x 768 input). `patch_size`
    is the output stride.
    """

    def __init__(
        self,
        model: str = DEFAULT_CLIP_MODEL,
        weights: str | None = None,
        device: torch.device | str = "cpu",
        featup_dir: str | None = None,
        featup_entry: str = "maskclip",
        featup_kwargs: dict[str, Any] | None = None,
        output_stride: int | None = None,
        normalization: str = "imagenet",
    ) -> None:
        super().__init__()
        if normalization not in ("imagenet", "clip"):
            raise ValueError(f"maskclip: normalization must be 'imagenet' or 'clip', got {normalization!r}")
        net, _ = load_open_clip(model, weights, device)
        visual = net.visual
        blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
        if blocks is None or not isinstance(getattr(blocks[-1], "attn", None), nn.MultiheadAttention):
            raise TypeError(f"maskclip: {model} has no open_clip ViT image tower with standard attention blocks")
        self.visual = visual
        self.clip_patch = int(visual.patch_size[0])
        self.feature_dim: int = int(visual.output_dim)
        self.patch_size: int = int(output_stride or self.clip_patch)
        if normalization == "imagenet":
            self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        else:
            self.mean = tuple(getattr(visual, "image_mean", None) or OPENAI_CLIP_MEAN)
            self.std = tuple(getattr(visual, "image_std", None) or OPENAI_CLIP_STD)
        kwargs = {"use_norm": False} if featup_kwargs is None else dict(featup_kwargs)
        self.upsampler = load_featup_upsampler(featup_dir, featup_entry, device, **kwargs) if featup_dir else None
        if self.upsampler is None and self.patch_size != self.clip_patch:
            raise ValueError(
                f"maskclip: output_stride {self.patch_size} needs FeatUp (featup_dir); CLIP patch is {self.clip_patch}"
            )
        self.freeze(device)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, "maskclip", math.lcm(self.clip_patch, self.patch_size))
        images = images.to(self.device, torch.float32)
        features = self._dense_clip(normalize(images, self.mean, self.std))
        if self.upsampler is None:
            return features
        guidance = normalize(images, IMAGENET_MEAN, IMAGENET_STD)
        upsampled = self.upsampler(features, guidance)
        height, width = images.shape[-2:]
        return F.adaptive_avg_pool2d(upsampled, (height // self.patch_size, width // self.patch_size))

    def _dense_clip(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised -> (B, C, H / p, W / p) MaskCLIP features."""
        visual = self.visual
        tokens = visual.conv1(x)
        batch, width, rows, cols = tokens.shape
        tokens = torch.cat([visual.class_embedding.expand(batch, 1, width), tokens.flatten(2).transpose(1, 2)], dim=1)
        tokens = visual.ln_pre(tokens + self._position_embedding(rows, cols))
        batch_first = getattr(visual.transformer, "batch_first", True)
        tokens = tokens if batch_first else tokens.transpose(0, 1)
        for block in visual.transformer.resblocks[:-1]:
            tokens = block(tokens)
        tokens = tokens if batch_first else tokens.transpose(0, 1)
        tokens = _value_path(visual.transformer.resblocks[-1], tokens)
        patches = visual.ln_post(tokens[:, 1:]) @ visual.proj
        return patches.transpose(1, 2).reshape(batch, self.feature_dim, rows, cols)

    def _position_embedding(self, rows: int, cols: int) -> torch.Tensor:
        """(1 + rows * cols, width) class + patch position embeddings for a rows x cols patch grid.

        Bicubic resampling as FeatUp's featuriser does it (DINO's recipe): scale factors
        (n + 0.1) / N, used as given, which places the samples slightly off a plain resize to n."""
        pos = self.visual.positional_embedding
        grid_rows, grid_cols = self.visual.grid_size
        if (rows, cols) == (grid_rows, grid_cols):
            return pos
        grid = pos[1:].reshape(1, grid_rows, grid_cols, -1).permute(0, 3, 1, 2)
        scale = ((rows + 0.1) / grid_rows, (cols + 0.1) / grid_cols)
        grid = F.interpolate(
            grid, scale_factor=scale, mode="bicubic", align_corners=False, recompute_scale_factor=False
        )
        return torch.cat([pos[:1], grid.flatten(2)[0].transpose(0, 1)], dim=0)


def _value_path(block: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The value path of one open_clip residual block: out_proj(v_proj(ln_1(x))), tokens (B, L, W) -> (B, L, W)."""
    attn: nn.MultiheadAttention = block.attn
    width = tokens.shape[-1]
    values = F.linear(block.ln_1(tokens), attn.in_proj_weight[2 * width :], attn.in_proj_bias[2 * width :])
    return attn.out_proj(values)
