"""Per-layer Gaussian head (decoder queries -> 3D Gaussians) and the 2D segmentation head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gausstr_core.gaussians import Gaussians
from gausstr_core.geometry import covariance_from_scale_rotation, rotmat_to_quat, unproject_pixels
from gausstr_core.model.layers import MLP, inverse_sigmoid


def sample_depth(depths: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear depth at normalised image points.

    depths (B, N, H, W) m; uv (B, N, Q, 2) with x = u / W, y = v / H in [0, 1] (pixel centres at
    (i + 0.5) / W). Returns (B, N, Q) m (zero padding outside the image).
    """
    b, n, h, w = depths.shape
    grid = (2 * uv - 1).reshape(b * n, -1, 1, 2)
    maps = depths.reshape(b * n, 1, h, w)
    sampled = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return sampled.reshape(b, n, -1)


def uv_to_ego(
    uv: torch.Tensor, depth: torch.Tensor, intrinsics: torch.Tensor, cam2ego: torch.Tensor,
    original_to_input: torch.Tensor, input_size: tuple[int, int],
) -> torch.Tensor:
    """Back-project normalised network-input points to the ego frame.

    uv (B, N, Q, 2) in [0, 1]; depth (B, N, Q) optical z, m; intrinsics, original_to_input (B, N, 3, 3);
    cam2ego (B, N, 4, 4); input_size (H, W). Returns (B, N, Q, 3) ego frame, m.
    """
    pixels = uv * uv.new_tensor([input_size[1], input_size[0]])
    return unproject_pixels(pixels, depth, cam2ego, intrinsics, original_to_input)


class GaussianHead(nn.Module):
    """Decoder queries of one layer -> Gaussians (the authors' head; all MLPs 2 layers).

    offset: (du, dv, dz); uv = sigmoid((du, dv) + logit(ref)); depth = depth_map(uv) * (1 + dz).
    scale: [lo, hi] via sigmoid, times depth_map(uv) * scale_multiplier / fx (original-pixel fx).
    rotation: the camera's cam2ego rotation; opacity: sigmoid; feature: linear output.
    """

    def __init__(
        self, embed_dims: int, hidden_dims: int, feature_dim: int, scale_range: tuple[float, float],
        scale_multiplier: float,
    ) -> None:
        super().__init__()
        self.offset = MLP(embed_dims, hidden_dims, 3)
        self.opacity = MLP(embed_dims, hidden_dims, 1)
        self.scale = MLP(embed_dims, hidden_dims, 3)
        self.feature = MLP(embed_dims, hidden_dims, feature_dim)
        self.scale_range = tuple(scale_range)
        self.scale_multiplier = scale_multiplier

    def forward(
        self, hidden: torch.Tensor, ref: torch.Tensor, depths: torch.Tensor, intrinsics: torch.Tensor,
        cam2ego: torch.Tensor, original_to_input: torch.Tensor,
    ) -> Gaussians:
        """hidden (B, N, Q, D); ref (B, N, Q, 2) in [0, 1]; depths (B, N, H, W) m, already clamped;
        intrinsics, original_to_input (B, N, 3, 3); cam2ego (B, N, 4, 4). Returns Gaussians with
        B x (N*Q), view-major. Geometry runs in float32 even under autocast."""
        b, n, q, _ = hidden.shape
        offset = self.offset(hidden).float()
        opacities = torch.sigmoid(self.opacity(hidden).float()).squeeze(-1)
        features = self.feature(hidden).float()
        lo, hi = self.scale_range
        scale_factor = lo + (hi - lo) * torch.sigmoid(self.scale(hidden).float())
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            intrinsics, cam2ego, original_to_input = intrinsics.float(), cam2ego.float(), original_to_input.float()
            uv = torch.sigmoid(offset[..., :2] + inverse_sigmoid(ref.float()))
            depth_at_uv = sample_depth(depths.float(), uv)
            means = uv_to_ego(uv, depth_at_uv * (1 + offset[..., 2]), intrinsics, cam2ego, original_to_input,
                              depths.shape[-2:])
            fx = intrinsics[..., 0, 0, None]  # (B, N, 1)
            scales = scale_factor * (depth_at_uv * self.scale_multiplier / fx).clamp(min=1e-6)[..., None]
            rotmats = cam2ego[..., :3, :3]
            covariances = covariance_from_scale_rotation(scales, rotmats[:, :, None])
            quats = rotmat_to_quat(rotmats)[:, :, None].expand(b, n, q, 4)
        return Gaussians(
            means=means.flatten(1, 2),
            scales=scales.flatten(1, 2),
            quats=quats.flatten(1, 2),
            covariances=covariances.flatten(1, 2),
            opacities=opacities.flatten(1, 2),
            features=features.flatten(1, 2),
        )


class SegmentHead(nn.Module):
    """2D segmentation head (FeatUp variant): one MLP per decoder layer, as the authors train
    each layer's rendering with its own head. (..., in_dims) rendered PCA features -> (..., classes) logits."""

    def __init__(self, num_layers: int, in_dims: int, hidden_dims: int, num_classes: int) -> None:
        super().__init__()
        self.mlps = nn.ModuleList(MLP(in_dims, hidden_dims, num_classes) for _ in range(num_layers))

    def forward(self, features: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """features (..., in_dims) -> logits (..., num_classes) with the head of decoder layer `layer`."""
        return self.mlps[layer](features)
