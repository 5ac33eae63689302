"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch.

Maths per query q, head h: out_h = sum_{l,p} a_{hlp} * bilinear(V_l W_h + b_h, ref + off_{hlp} / (w_l, h_l)),
with zero padding outside each map (grid_sample, align_corners=False), then an output projection.

`MultiScaleDeformableAttention` evaluates this in "sample first" order: the bilinear taps times
the attention weights form, per query and head, one weighted sum over raw value pixels
(`F.embedding_bag` over the channels-last map: no per-point copies), and the per-head value
projection is applied to those Q x heads sums afterwards (its bias scaled by the in-bounds
bilinear mass). That is exact, and far cheaper than projecting every value pixel when queries
are few (a decoder: 300 queries against ~49k pixels per view). `reference_ms_deform_attn` is the
textbook order (project all values, then grid_sample level by level) used to verify and benchmark it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MultiScaleDeformableAttention(nn.Module):
    """Deformable cross-attention from queries to a list of value maps.

    Parameters as Deformable DETR: sampling_offsets (D -> heads*levels*points*2),
    attention_weights (D -> heads*levels*points), value_proj (D -> D), output_proj (D -> D).
    """

    def __init__(self, embed_dims: int, num_heads: int, num_levels: int, num_points: int) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f"deformable attention: embed_dims {embed_dims} not divisible by num_heads {num_heads}")
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.num_levels, self.num_points = num_levels, num_points
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dims, embed_dims)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR initialisation: offsets start on rings of radius 1..points around the reference."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (2 * math.pi / self.num_heads)
        directions = torch.stack([angles.cos(), angles.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True).values
        radii = torch.arange(1, self.num_points + 1, dtype=torch.float32)
        bias = directions[:, None, None, :] * radii[None, None, :, None]  # (heads, 1, points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.expand(-1, self.num_levels, -1, -1).flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def sampling_grid(
        self, query: torch.Tensor, ref: torch.Tensor, value_maps: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Sampling locations and weights.

        query (B, Q, D); ref (B, Q, 2) normalised (x = u / W, y = v / H) in [0, 1].
        Returns grids: per level (B, Q, heads, points, 2) in grid_sample's [-1, 1] coordinates, and
        weights (B, Q, heads, levels, points) summing to 1 over levels x points.
        """
        b, q, _ = query.shape
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        if len(value_maps) != levels:
            raise ValueError(f"MultiScaleDeformableAttention: expected {levels} value maps, got {len(value_maps)}")
        offsets = self.sampling_offsets(query).view(b, q, heads, levels, points, 2)
        weights = self.attention_weights(query).view(b, q, heads, levels * points).softmax(-1)
        grids = []
        for level, vmap in enumerate(value_maps):
            size = offsets.new_tensor([vmap.shape[-1], vmap.shape[-2]])  # (w, h)
            loc = ref[:, :, None, None, :] + offsets[:, :, :, level] / size
            grids.append(2 * loc - 1)
        return grids, weights.view(b, q, heads, levels, points)

    def forward(self, query: torch.Tensor, ref: torch.Tensor, value_maps: list[torch.Tensor]) -> torch.Tensor:
        """query (B, Q, D) (positional encoding already added); ref (B, Q, 2) in [0, 1];
        value_maps: levels x (B, D, h_l, w_l), fastest in channels_last. Returns (B, Q, D)."""
        b, q, dims = query.shape
        heads = self.num_heads
        grids, weights = self.sampling_grid(query, ref, value_maps)
        pooled = 0  # (B*Q*heads, D): attention-weighted raw values
        mass = 0  # (B, Q, heads): attention-weighted in-bounds bilinear mass (carries the value_proj bias)
        for level, (vmap, grid) in enumerate(zip(value_maps, grids)):
            h, w = vmap.shape[-2:]
            index, corner_w = _bilinear_corners(grid, h, w)  # (B, Q, heads, points, 4)
            index = index + torch.arange(b, device=index.device).view(b, 1, 1, 1, 1) * (h * w)
            sample_w = corner_w * weights[:, :, :, level, :, None]
            table = vmap.permute(0, 2, 3, 1).reshape(b * h * w, dims)  # a view for channels_last maps
            bags, bag_w = index.view(b * q * heads, -1), sample_w.reshape(b * q * heads, -1).to(table.dtype)
            pooled = pooled + F.embedding_bag(bags, table, per_sample_weights=bag_w, mode="sum")
            mass = mass + sample_w.sum((-2, -1))
        proj_w = self.value_proj.weight.view(heads, dims // heads, dims)
        values = torch.einsum("bqhc,hdc->bqhd", pooled.view(b, q, heads, dims), proj_w)
        values = values + mass[..., None] * self.value_proj.bias.view(heads, -1)
        return self.output_proj(values.flatten(2))


def _bilinear_corners(grid: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear taps of grid_sample (align_corners=False, zero padding) on an h x w map.

    grid (..., 2) in [-1, 1] (x, y). Returns flat pixel indices y * w + x (..., 4) (clamped into
    the map) and corner weights (..., 4), zero for corners outside the map.
    """
    x = (grid[..., 0] + 1) * (w / 2) - 0.5  # continuous pixel index, centres at integers
    y = (grid[..., 1] + 1) * (h / 2) - 0.5
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    xs = torch.stack([x0, x0 + 1, x0, x0 + 1], -1)
    ys = torch.stack([y0, y0, y0 + 1, y0 + 1], -1)
    weights = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], -1)
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    index = ys.clamp(0, h - 1).long() * w + xs.clamp(0, w - 1).long()
    return index, weights * inside


def reference_ms_deform_attn(
    attn: MultiScaleDeformableAttention, query: torch.Tensor, ref: torch.Tensor, value_maps: list[torch.Tensor]
) -> torch.Tensor:
    """Same result as `attn(query, ref, value_maps)`, computed in the textbook order: project every
    value pixel, then grid_sample each level per head and sum with the attention weights."""
    b, q, dims = query.shape
    heads = attn.num_heads
    grids, weights = attn.sampling_grid(query, ref, value_maps)
    per_level = []
    for vmap, grid in zip(value_maps, grids):
        h, w = vmap.shape[-2:]
        value = attn.value_proj(vmap.flatten(2).transpose(1, 2))  # (B, h*w, D)
        value = value.transpose(1, 2).reshape(b * heads, dims // heads, h, w)
        head_grid = grid.transpose(1, 2).flatten(0, 1)  # (B*heads, Q, points, 2)
        per_level.append(F.grid_sample(value, head_grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    sampled = torch.stack(per_level, dim=-2)  # (B*heads, D/heads, Q, levels, points)
    w = weights.permute(0, 2, 1, 3, 4).flatten(0, 1)[:, None]  # (B*heads, 1, Q, levels, points)
    out = (sampled * w).sum((-2, -1)).view(b, dims, q).transpose(1, 2)
    return attn.output_proj(out)
