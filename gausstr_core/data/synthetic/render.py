"""Camera images of the synthetic world: true depth, class map, shaded RGB and a noisy depth estimate.

RGB = class colour x Lambert shading x world-anchored value-noise texture + per-pixel sensor
noise; the brightness factor stays inside `palette.BRIGHTNESS_RANGE` so colours decode back to
classes. The depth "estimate" mimics a monocular metric-depth network: a per-image scale error,
a smooth error field whose amplitude grows with range, fine noise, and finite far values for sky.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gausstr_core.data.synthetic.raycast import RayCaster
from gausstr_core.synthetic_palette import palette_tensor


@dataclass
class CameraView:
    """depth (H, W) optical z, m, 0 where only sky is seen; classes (H, W) int64 Occ3D ids
    (17 = sky); rgb (H, W, 3) uint8."""

    depth: torch.Tensor
    classes: torch.Tensor
    rgb: torch.Tensor


def pixel_rays(
    intrinsics: np.ndarray, cam2road: np.ndarray, width: int, height: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rays through the pixel centres of a camera.

    Returns origins (H, W, 3) and unit directions (H, W, 3) in the road frame, and the optical z
    of each unit direction (H, W) (depth = distance x z).
    """
    v, u = torch.meshgrid(
        torch.arange(height, dtype=torch.float64) + 0.5, torch.arange(width, dtype=torch.float64) + 0.5, indexing="ij"
    )
    pix = torch.stack([u, v, torch.ones_like(u)], -1)
    rays = pix @ torch.linalg.inv(torch.as_tensor(intrinsics)).T
    rays = rays / rays.norm(dim=-1, keepdim=True)
    pose = torch.as_tensor(cam2road)
    dirs = rays @ pose[:3, :3].T
    origins = pose[:3, 3].expand_as(dirs)
    return origins.float(), dirs.float(), rays[..., 2].float()


def render_view(
    caster: RayCaster, intrinsics: np.ndarray, cam2road: np.ndarray, width: int, height: int, generator: torch.Generator
) -> CameraView:
    """Ray-cast one width x height camera image."""
    origins, dirs, z = pixel_rays(intrinsics, cam2road, width, height)
    hits = caster.cast(origins, dirs)
    seen = torch.isfinite(hits.distance)
    depth = torch.where(seen, hits.distance * z.reshape(-1), 0.0).reshape(height, width)

    sun = torch.as_tensor(caster.world.sun, dtype=torch.float32)
    shade = 0.65 + 0.33 * (hits.normal @ sun).clamp(min=0)
    texture = 1 + 0.12 * (_value_noise(hits.point) - 0.5)
    sky_shade = 0.86 + 0.18 * dirs.reshape(-1, 3)[:, 2].clamp(0, 1)  # brighter towards the zenith
    factor = torch.where(seen, shade * texture, sky_shade)
    rgb = palette_tensor()[hits.cls] * factor[:, None] * 255.0
    rgb = rgb + torch.randn(rgb.shape, generator=generator) * 2.5
    rgb = rgb.round().clamp(0, 255).to(torch.uint8).reshape(height, width, 3)
    return CameraView(depth, hits.cls.reshape(height, width), rgb)


def _value_noise(points: torch.Tensor) -> torch.Tensor:
    """World-anchored texture in [0, 1] from hashed 3 cm and 25 cm cells; points (N, 3) m."""
    return 0.5 * (_hash_cells(points, 0.03) + _hash_cells(points, 0.25))


def _hash_cells(points: torch.Tensor, cell: float) -> torch.Tensor:
    idx = torch.floor(points / cell).to(torch.int64)
    h = idx[:, 0] * 73856093 ^ idx[:, 1] * 19349663 ^ idx[:, 2] * 83492791
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 0xFFFF).float() / 0xFFFF


def estimate_depth(depth: torch.Tensor, generator: torch.Generator, sky_depth: float = 150.0) -> torch.Tensor:
    """A monocular-network-like estimate of a true (H, W) depth map (0 = sky) -> (H, W) m, all > 0.

    log(estimate) = log(depth) + per-image bias N(0, 0.04) + smooth field x (0.02 + 0.05 depth / 50)
    + fine noise N(0, 0.01); sky pixels get sky_depth with the same multiplicative errors.
    """
    height, width = depth.shape
    base = torch.where(depth > 0, depth, torch.full_like(depth, sky_depth))
    bias = torch.randn((), generator=generator) * 0.04
    coarse = torch.randn(1, 1, 6, 10, generator=generator)
    smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0, 0]
    sigma = 0.02 + 0.05 * base.clamp(max=80.0) / 50.0
    fine = torch.randn(depth.shape, generator=generator) * 0.01
    return base * torch.exp(bias + smooth * sigma + fine)


def encode_jpeg(rgb: torch.Tensor, quality: int = 90) -> bytes:
    """(H, W, 3) uint8 -> JPEG bytes without chroma subsampling (4:4:4), so class colours survive
    at object edges."""
    buffer = io.BytesIO()
    Image.fromarray(rgb.numpy()).save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def decode_jpeg(data: bytes) -> torch.Tensor:
    """JPEG bytes -> (3, H, W) uint8 RGB."""
    with Image.open(io.BytesIO(data)) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
