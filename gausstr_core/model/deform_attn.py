"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch.

Maths per query q, head h: out_h = sum_{l,p} a_{hlp} * bilinear(V_l W_h + b_h, ref + off_{hlp} / (w_l, h_l)),
with zero padding outside each map (grid_sample, align_corners=False), then an output projection.

`MultiScaleDeformableAttention` evaluates this in "sample first" order: bilinear sampling and the
attention-weighted sum act on the raw value maps, the per-head value projection is applied to the
Q x heads aggregates afterwards (its bias scaled by the in-bounds bilinear mass). That is exact,
and far cheaper than projecting every value pixel when queries are few (a decoder: 300 queries
against ~25k pixels per view). `reference_ms_deform_attn` is the textbook order (project all
values, then sample level by level) used to verify and benchmark it.
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

    def sampling_grid(self, query: torch.Tensor, ref: torch.Tensor, value_maps: list[torch.Tensor]):
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
        value_maps: levels x (B, D, h_l, w_l). Returns (B, Q, D)."""
        b, q, dims = query.shape
        heads = self.num_heads
        grids, weights = self.sampling_grid(query, ref, value_maps)
        pooled = query.new_zeros(b, q, heads, dims)  # attention-weighted raw values per head
        mass = query.new_zeros(b, q, heads)  # attention-weighted in-bounds bilinear mass
        for level, (vmap, grid) in enumerate(zip(value_maps, grids)):
            flat_grid = grid.flatten(2, 3)  # (B, Q, heads*points, 2)
            w = weights[:, :, :, level]  # (B, Q, heads, points)
            vmap = vmap.contiguous(memory_format=torch.channels_last)  # 3-4x faster grid_sample on CPU
            sampled = F.grid_sample(vmap, flat_grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            pooled = pooled + torch.einsum("bcqhp,bqhp->bqhc", sampled.unflatten(-1, (heads, -1)), w)
            ones = flat_grid.new_ones(b, 1, *vmap.shape[-2:])
            inside = F.grid_sample(ones, flat_grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            mass = mass + (inside[:, 0].unflatten(-1, (heads, -1)) * w).sum(-1)
        proj_w = self.value_proj.weight.view(heads, dims // heads, dims)
        values = torch.einsum("bqhc,hdc->bqhd", pooled, proj_w)
        values = values + mass[..., None] * self.value_proj.bias.view(heads, -1)
        return self.output_proj(values.flatten(2))


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
