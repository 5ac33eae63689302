"""The CUDA backend: `gsplat.rasterization` (imported lazily; never called on CPU, where it would
try to JIT-build its CUDA extension)."""

from __future__ import annotations

import warnings

import torch

from gausstr_core.render.projection import EPS2D

CHANNEL_CHUNK = 32
_WORKS: dict[torch.device, bool] = {}


def rasterize_gsplat(
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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render with gsplat in 'RGB+D' mode, float32, channel chunks of 32.

    means (B, G, 3) world, m; quats (B, G, 4) w x y z; scales (B, G, 3); opacities (B, G);
    colors (B, G, D); viewmats (B, N, 4, 4) world -> optical; ks (B, N, 3, 3) pixels.
    Returns features (B, N, D, H, W), accumulated depth (B, N, H, W), alpha (B, N, H, W).
    """
    if not means.is_cuda:
        raise ValueError(f"the gsplat render backend needs CUDA tensors, got device {means.device}")
    from gsplat import rasterization

    height, width = image_size
    with torch.autocast(device_type="cuda", enabled=False):
        rendered, alpha, _ = rasterization(
            means.float().contiguous(),
            quats.float().contiguous(),
            scales.float().contiguous(),
            opacities.float().contiguous(),
            colors.float().contiguous(),
            viewmats.float().contiguous(),
            ks.float().contiguous(),
            width=width,
            height=height,
            near_plane=near,
            far_plane=far,
            eps2d=EPS2D,
            packed=False,
            render_mode="RGB+D",
            rasterize_mode="classic",
            channel_chunk=CHANNEL_CHUNK,
        )  # (B, N, H, W, D + 1), (B, N, H, W, 1)
    return rendered[..., :-1].permute(0, 1, 4, 2, 3), rendered[..., -1], alpha[..., 0]


def gsplat_works(device: torch.device) -> bool:
    """Whether gsplat imports and rasterizes a tiny scene on this CUDA device (cached; warns once)."""
    device = torch.device(device)
    if device.type != "cuda":
        return False
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device not in _WORKS:
        try:
            eye = torch.eye(4, device=device)[None, None]
            ks = torch.tensor([[10.0, 0, 4], [0, 10.0, 4], [0, 0, 1]], device=device)[None, None]
            means = torch.tensor([[[0.0, 0.0, 2.0]]], device=device)
            quats = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]], device=device)
            rasterize_gsplat(
                means, quats, torch.full_like(means, 0.1), torch.ones(1, 1, device=device),
                torch.ones(1, 1, 1, device=device), eye, ks, (8, 8), 0.1, 100.0,
            )
            torch.cuda.synchronize(device)
            _WORKS[device] = True
        except Exception as error:  # any import/JIT/launch failure means "fall back"
            warnings.warn(
                f"gsplat rasterization unavailable on {device} ({error!r}); using the PyTorch renderer", stacklevel=2
            )
            _WORKS[device] = False
    return _WORKS[device]
