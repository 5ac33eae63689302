"""Shared plumbing of the providers: frozen inference-only modules and image-batch checks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FrozenModel(nn.Module):
    """A provider wrapping a pretrained network: no gradients, always in eval mode.

    Subclasses build their network, then call `self.freeze(device)`. `train(True)` is ignored so
    that a frozen backbone inside a training loop keeps dropout/norm layers in inference mode.
    """

    def freeze(self, device: torch.device | str) -> None:
        self.requires_grad_(False)
        self.to(device)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenModel:
        return super().train(False)

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")


def check_images(images: torch.Tensor, who: str, multiple_of: int = 1) -> None:
    """Raise ValueError unless `images` is (B, 3, H, W) floating point with H, W multiples of `multiple_of`."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{who}: images must be (B, 3, H, W) RGB, got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"{who}: images must be float in [0, 1], got dtype {images.dtype}")
    height, width = images.shape[-2:]
    if height % multiple_of or width % multiple_of:
        raise ValueError(f"{who}: image size {height}x{width} must be a multiple of the patch size {multiple_of}")


def check_intrinsics(intrinsics: torch.Tensor, batch: int, who: str) -> None:
    """Raise ValueError unless `intrinsics` is (batch, 3, 3)."""
    if not isinstance(intrinsics, torch.Tensor) or tuple(intrinsics.shape) != (batch, 3, 3):
        shape = tuple(intrinsics.shape) if isinstance(intrinsics, torch.Tensor) else type(intrinsics).__name__
        raise ValueError(f"{who}: intrinsics must be ({batch}, 3, 3) for {batch} images, got {shape}")


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (images - mean) / std per channel."""
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean_t) / std_t
