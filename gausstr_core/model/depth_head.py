"""Optional metric-depth head on the neck: the depth GaussTR samples for its Gaussians, without a
depth network at inference.

A small top-down conv decoder fuses the neck's four maps (coarsest first) and adds three camera-ray
channels at the finest level; from there it predicts a logit residual, upsampled bilinearly to the
network input size. At the input size, the probability g that a pixel shows the ground comes from
those maps (upsampled), a small conv stem on the network-input image (the patch features blur the
outline of a pole or trunk inside an 8 x 8 patch; the pixels keep it) and the rays.
The residual corrects a geometric prior p: depth = exp(log d_min + sigmoid(logit(p) + residual)
(log d_max - log d_min)), so the output always lies in [d_min, d_max] (d_max = model.depth_max, the
range GaussTR clamps depth to). The prior is the foot depth: every image column is scanned bottom-up,
p(v) = g(v) p_ground(v) + (1 - g(v)) p(v + 1), with p_ground the normalised log depth at which the
pixel's ray meets the ego ground plane, capped at PRIOR_FAR. A pixel on something standing on the
ground (a pole, a trunk, a facade) thus starts at the depth of the ground where that thing stands:
with level cameras a vertical structure keeps its optical depth up its image column. g starts near 1
(GROUND_BIAS), so the untrained head starts at the flat ground (capped), which the training then
corrects. The cap keeps the sigmoid off its flat end: with the prior at d_max (every ray above the
horizon) its slope is 1 % of the centre's, and the objects seen there (mostly nearer than 20 m)
learnt slowly: held-out abs rel 0.44 uncapped vs 0.28 capped after the same 400 head steps; the foot
scan with the image-guided g then brought 0.232 to 0.188 after 900 (docs/learning.md).

The ray channels make metric depth learnable from semantic features that carry no scale: per pixel,
the ego-frame height change dz of the pixel's ray per metre of optical depth, p_ground (d_max where
it never meets the ground), and whether it does. They depend on the camera's intrinsics, extrinsics
and the resize only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gausstr_core.geometry import pixel_to_input_matrix

MIN_DEPTH = 0.1  # m, the head's lower bound
RAY_CHANNELS = 3
PRIOR_MARGIN = 0.01  # the ground prior p is clamped to [margin, 1 - margin] before its logit
PRIOR_FAR = 20.0  # m: and to at most this depth's normalised log (the module docstring)
GROUND_BIAS = 4.0  # initial logit of the ground probability g: sigmoid(4) = 0.98, the flat-ground start
IMAGE_STEM = 16  # channels of the image stem behind g
GROUND_HIDDEN = 32  # hidden channels of g's per-pixel layers


def ray_channels(
    intrinsics: torch.Tensor, cam2ego: torch.Tensor, original_to_input: torch.Tensor, input_size: tuple[int, int],
    map_size: tuple[int, int], min_depth: float, max_depth: float,
) -> torch.Tensor:
    """Camera-ray channels (M, 3, h, w) at the centres of an (h, w) = map_size grid over the input.

    intrinsics, original_to_input (M, 3, 3) original-pixel K and original -> input pixels; cam2ego (M, 4, 4)
    optical -> ego; input_size (H, W). Channels: dz (ego z change per metre of optical depth),
    (log g - log min_depth) / (log max_depth - log min_depth) with g the optical depth where the ray
    reaches ego z = 0 clamped to [min_depth, max_depth], and 1 where the ray descends to the ground.
    """
    (height, width), (h, w) = input_size, map_size
    device = intrinsics.device
    v = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * (height / h)
    u = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * (width / w)
    pixels = torch.stack([*torch.meshgrid(u, v, indexing="xy"), torch.ones(h, w, device=device)], -1)  # (h, w, 3)
    k_inv = torch.linalg.inv(pixel_to_input_matrix(intrinsics.float(), original_to_input.float()))  # (M, 3, 3)
    # z row of (cam2ego rotation @ K^-1): ego height change per metre of optical depth, per pixel
    dz_row = (cam2ego[:, 2:3, :3].float() @ k_inv)[:, 0]  # (M, 3)
    dz = torch.einsum("hwc,mc->mhw", pixels, dz_row)
    height_above = cam2ego[:, 2, 3].float()[:, None, None]
    descends = (dz < -1e-6) & (height_above > 0)
    ground = torch.where(descends, height_above / (-dz).clamp(min=1e-6), torch.full_like(dz, max_depth))
    log_range = math.log(max_depth) - math.log(min_depth)
    log_ground = (ground.clamp(min_depth, max_depth).log() - math.log(min_depth)) / log_range
    return torch.stack([dz, log_ground, descends.float()], dim=1)


def _conv_block(in_channels: int, out_channels: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.GELU())


class DepthHead(nn.Module):
    """Neck maps -> metric depth (see the module docstring).

    Call: `head(maps, images, intrinsics, cam2ego, original_to_input) -> (M, H, W)` m in
    [min_depth, max_depth]; maps: the neck's levels, finest first, each (M, in_channels, h_l, w_l)
    (M = B * N views); images: (M, 3, H, W) RGB in [0, 1] at the network input size (H, W);
    intrinsics, original_to_input (M, 3, 3); cam2ego (M, 4, 4).
    """

    def __init__(self, in_channels: int, hidden: int, levels: int, max_depth: float,
                 min_depth: float = MIN_DEPTH) -> None:
        super().__init__()
        if hidden <= 0 or levels <= 0 or not 0 < min_depth < max_depth:
            raise ValueError(
                f"DepthHead: need hidden > 0, levels > 0 and 0 < min_depth < max_depth, got {hidden}, {levels}, "
                f"{min_depth}, {max_depth}"
            )
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.lateral = nn.ModuleList(nn.Conv2d(in_channels, hidden, 1) for _ in range(levels))
        self.fuse = nn.ModuleList(_conv_block(hidden, hidden) for _ in range(levels - 1))
        self.out = nn.Sequential(_conv_block(hidden + RAY_CHANNELS, hidden), nn.Conv2d(hidden, 1, 1))
        self.stem = nn.Sequential(_conv_block(3, IMAGE_STEM), _conv_block(IMAGE_STEM, IMAGE_STEM))
        self.ground = nn.Sequential(nn.Conv2d(hidden + IMAGE_STEM + RAY_CHANNELS, GROUND_HIDDEN, 1), nn.GELU(),
                                    nn.Conv2d(GROUND_HIDDEN, 1, 3, padding=1))
        with torch.no_grad():  # start near the prior (small, not zero: every layer gets gradients)
            self.out[-1].weight.normal_(0.0, 1e-3)
            self.out[-1].bias.zero_()
            self.ground[-1].weight.normal_(0.0, 1e-3)
            self.ground[-1].bias.fill_(GROUND_BIAS)

    def forward(
        self, maps: list[torch.Tensor], images: torch.Tensor, intrinsics: torch.Tensor, cam2ego: torch.Tensor,
        original_to_input: torch.Tensor,
    ) -> torch.Tensor:
        if len(maps) != len(self.lateral):
            raise ValueError(f"DepthHead: expected {len(self.lateral)} neck maps, got {len(maps)}")
        if images.dim() != 4 or images.shape[:2] != (maps[0].shape[0], 3):
            raise ValueError(f"DepthHead: images must be (M, 3, H, W) with M = {maps[0].shape[0]} views, got "
                             f"{tuple(images.shape)}")
        input_size = tuple(images.shape[-2:])
        x = self.lateral[-1](maps[-1])
        for level in range(len(maps) - 2, -1, -1):
            up = F.interpolate(x, size=maps[level].shape[-2:], mode="bilinear", align_corners=False)
            x = self.fuse[level](self.lateral[level](maps[level]) + up)
        rays = ray_channels(intrinsics, cam2ego, original_to_input, input_size, tuple(x.shape[-2:]),
                            self.min_depth, self.max_depth)
        residual = self.out(torch.cat([x, rays.to(x.dtype)], dim=1))
        residual = F.interpolate(residual.float(), size=input_size, mode="bilinear", align_corners=False)[:, 0]
        full_rays = ray_channels(intrinsics, cam2ego, original_to_input, input_size, input_size,
                                 self.min_depth, self.max_depth)
        # g's first layer is 1x1 on [upsampled maps, stem, rays]: its maps part runs at the map size and is
        # upsampled after (bilinear interpolation commutes with a per-pixel linear map), which saves upsampling
        # and concatenating the maps' channels at the input size.
        first = self.ground[0]
        hidden = x.shape[1]
        coarse = F.interpolate(F.conv2d(x, first.weight[:, :hidden]), size=input_size, mode="bilinear",
                               align_corners=False)
        pixels = torch.cat([self.stem(images.to(x.dtype)), full_rays.to(x.dtype)], dim=1)
        hidden_g = coarse + F.conv2d(pixels, first.weight[:, hidden:], first.bias)
        is_ground = torch.sigmoid(self.ground[1:](hidden_g).float())[:, 0]
        log_min, log_max = math.log(self.min_depth), math.log(self.max_depth)
        far = (math.log(PRIOR_FAR) - log_min) / (log_max - log_min)
        prior = foot_prior(full_rays[:, 1].clamp(max=far), is_ground)
        logit = torch.logit(prior.clamp(PRIOR_MARGIN, 1 - PRIOR_MARGIN)) + residual
        return torch.exp(log_min + torch.sigmoid(logit) * (log_max - log_min))


def foot_prior(ground: torch.Tensor, is_ground: torch.Tensor) -> torch.Tensor:
    """Bottom-up column scan (M, H, W) -> (M, H, W): p(v) = g(v) ground(v) + (1 - g(v)) p(v + 1), p(H - 1) =
    ground(H - 1). ground: per pixel the (normalised log) ground depth of its ray; is_ground: g in [0, 1]."""
    rows = [ground[:, -1]]
    for v in range(ground.shape[1] - 2, -1, -1):
        rows.append(is_ground[:, v] * ground[:, v] + (1 - is_ground[:, v]) * rows[-1])
    return torch.stack(rows[::-1], dim=1)
