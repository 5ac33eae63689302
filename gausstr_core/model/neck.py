"""ViTDet simple feature pyramid: four scales from one ViT feature map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORM_EPS = 1e-6  # the authors' LN2d (ViTDet simple FPN) eps: converted weights reproduce their activations


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map (each pixel normalised on its own)."""

    def __init__(self, channels: int, eps: float = NORM_EPS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNorm(nn.Module):
    """Bias-free k x k convolution followed by LayerNorm2d (no activation)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = LayerNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


def _rescale_block(factor: float, channels: int) -> nn.Module:
    """Resampling of one pyramid level: x4 and x2 by transposed convolutions, x1/2 by max pooling."""
    if factor == 4:
        return nn.Sequential(
            nn.ConvTranspose2d(channels, channels // 2, 2, stride=2),
            LayerNorm2d(channels // 2),
            nn.GELU(),
            nn.ConvTranspose2d(channels // 2, channels // 4, 2, stride=2),
        )
    if factor == 2:
        return nn.ConvTranspose2d(channels, channels // 2, 2, stride=2)
    if factor == 1:
        return nn.Identity()
    return nn.MaxPool2d(kernel_size=2, stride=2)


class SimpleFeaturePyramid(nn.Module):
    """(B, C, h, w) ViT map -> 4 maps (B, out_channels, h*s, w*s) for s = 4, 2, 1, 1/2.

    Each level: resample (channels C/4, C/2, C, C), then 1x1 lateral and 3x3 output ConvNorm.
    """

    FACTORS = (4, 2, 1, 0.5)

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if in_channels % 4:
            raise ValueError(f"SimpleFeaturePyramid: in_channels must be divisible by 4, got {in_channels}")
        level_channels = [in_channels // 4, in_channels // 2, in_channels, in_channels]
        self.rescale = nn.ModuleList(_rescale_block(f, in_channels) for f in self.FACTORS)
        self.lateral = nn.ModuleList(ConvNorm(c, out_channels, 1) for c in level_channels)
        self.output = nn.ModuleList(ConvNorm(out_channels, out_channels, 3) for _ in level_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [out(lat(rescale(x))) for rescale, lat, out in zip(self.rescale, self.lateral, self.output)]
