"""The three provider interfaces every foundation model implements.

Images are (B, 3, H, W) float32 RGB in [0, 1] at network-input size; providers normalise
internally (e.g. ImageNet mean/std) as their model needs.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class FeatureProvider(Protocol):
    """Image -> dense feature map. `feature_dim` C; one cell per `patch_size` input pixels."""

    feature_dim: int
    patch_size: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) -> features (B, C, H // patch_size, W // patch_size)."""
        ...


@runtime_checkable
class DepthProvider(Protocol):
    """Image (+ intrinsics) -> metric depth."""

    def __call__(self, images: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W), intrinsics (B, 3, 3) of the network input -> depth (B, H, W), m (optical z)."""
        ...


@runtime_checkable
class TextEncoder(Protocol):
    """Prompts -> embeddings in the feature space of a matching FeatureProvider."""

    feature_dim: int

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """len P list of prompts -> (P, C) embeddings (not normalised unless the model does so)."""
        ...
