"""`render_gaussians`: splat Gaussians' features and depth into every camera of a batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gausstr_core.geometry import pixel_to_input_matrix
from gausstr_core.render.gsplat_backend import gsplat_works, rasterize_gsplat
from gausstr_core.render.projection import EPS2D, project_gaussians
from gausstr_core.render.rasterize_torch import rasterize_torch

BACKENDS = ("auto", "gsplat", "torch")


@dataclass
class RenderOutput:
    """features: (B, N, D, H, W) sum_i w_i f_i; depth: (B, N, H, W) sum_i w_i z_i, m (accumulated,
    not divided by alpha: gsplat 'RGB+D'); alpha: (B, N, H, W) accumulated opacity in [0, 1].
    Both backends render channel-last, so the tensors are strided views (not contiguous)."""

    features: torch.Tensor
    depth: torch.Tensor
    alpha: torch.Tensor


def render_gaussians(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    cam2ego: torch.Tensor,
    intrinsics: torch.Tensor,
    original_to_input: torch.Tensor,
    image_size: tuple[int, int],
    near: float = 0.1,
    far: float = 100.0,
    backend: str = "auto",
) -> RenderOutput:
    """Differentiably render B scenes of G Gaussians into N cameras each.

    means: (B, G, 3) ego frame, m; quats: (B, G, 4) w x y z, local -> ego; scales: (B, G, 3)
    standard deviations, m; opacities: (B, G); colors: (B, G, D) features to splat.
    cam2ego: (B, N, 4, 4) optical -> ego; intrinsics: (B, N, 3, 3) original-pixel K;
    original_to_input: (B, N, 3, 3) original -> network-input pixels; image_size: (H, W) network input.
    Gaussians with optical depth outside (near, far) are not drawn.
    backend: 'gsplat' (CUDA), 'torch' (any device) or 'auto' (gsplat on CUDA when it works).
    """
    if backend not in BACKENDS:
        raise ValueError(f"render_gaussians: backend must be one of {BACKENDS}, got {backend!r}")
    _check_inputs(means, quats, scales, opacities, colors, cam2ego, intrinsics, original_to_input, image_size)
    viewmats = torch.linalg.inv(cam2ego)
    ks = pixel_to_input_matrix(intrinsics, original_to_input)
    if backend == "auto":
        backend = "gsplat" if means.is_cuda and gsplat_works(means.device) else "torch"
    if backend == "gsplat":
        features, depth, alpha = rasterize_gsplat(
            means, quats, scales, opacities, colors, viewmats, ks, tuple(image_size), near, far
        )
        return RenderOutput(features=features, depth=depth, alpha=alpha)
    return _render_torch(means, quats, scales, opacities, colors, viewmats, ks, tuple(image_size), near, far)


def _render_torch(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    viewmats: torch.Tensor,
    ks: torch.Tensor,
    image_size: tuple[int, int],
    near: float,
    far: float,
) -> RenderOutput:
    """The pure-PyTorch path, in float32 or float64 (half inputs are promoted; autocast is off)."""
    dtype = torch.promote_types(means.dtype, torch.float32)
    batch, views = viewmats.shape[:2]
    num_gaussians, channels = colors.shape[1:]
    with torch.autocast(device_type=means.device.type, enabled=False):
        proj = project_gaussians(
            means.to(dtype), quats.to(dtype), scales.to(dtype), viewmats.to(dtype), ks.to(dtype),
            image_size, opacities=opacities.detach().to(dtype), eps2d=EPS2D, near=near, far=far,
        )
        per_view = colors.to(dtype)[:, None].expand(batch, views, num_gaussians, channels)
        splat = torch.cat([per_view, proj.depths[..., None]], dim=-1)  # depth as the last channel
        flat_opacities = opacities.to(dtype)[:, None].expand(batch, views, num_gaussians)
        rendered = rasterize_torch(
            proj.means2d.flatten(0, 1),
            proj.conics.flatten(0, 1),
            flat_opacities.flatten(0, 1),
            splat.flatten(0, 1),
            proj.depths.detach().flatten(0, 1),
            proj.radii.flatten(0, 1),
            image_size,
        )  # (B * N, H, W, D + 2) channel-last: features, depth, alpha
    features, depth, alpha = rendered.unflatten(0, (batch, views)).split([channels, 1, 1], dim=-1)
    return RenderOutput(features=features.permute(0, 1, 4, 2, 3), depth=depth[..., 0], alpha=alpha[..., 0])


def _check_inputs(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    cam2ego: torch.Tensor,
    intrinsics: torch.Tensor,
    original_to_input: torch.Tensor,
    image_size: tuple[int, int],
) -> None:
    if means.dim() != 3 or means.shape[-1] != 3:
        raise ValueError(f"render_gaussians: means must be (B, G, 3), got {tuple(means.shape)}")
    batch, num_gaussians = means.shape[:2]
    expected = {
        "quats": (quats, (batch, num_gaussians, 4)),
        "scales": (scales, (batch, num_gaussians, 3)),
        "opacities": (opacities, (batch, num_gaussians)),
    }
    if colors.dim() != 3 or colors.shape[:2] != (batch, num_gaussians):
        raise ValueError(f"render_gaussians: colors must be ({batch}, {num_gaussians}, D), got {tuple(colors.shape)}")
    if cam2ego.dim() != 4 or cam2ego.shape[0] != batch or cam2ego.shape[2:] != (4, 4):
        raise ValueError(f"render_gaussians: cam2ego must be ({batch}, N, 4, 4), got {tuple(cam2ego.shape)}")
    views = cam2ego.shape[1]
    expected["intrinsics"] = (intrinsics, (batch, views, 3, 3))
    expected["original_to_input"] = (original_to_input, (batch, views, 3, 3))
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"render_gaussians: {name} must be {shape}, got {tuple(tensor.shape)}")
    if len(image_size) != 2 or min(image_size) <= 0:
        raise ValueError(f"render_gaussians: image_size must be (H, W) > 0, got {image_size!r}")
