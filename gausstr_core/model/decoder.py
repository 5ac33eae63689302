"""One post-norm GaussTR decoder layer: deformable cross-attention -> self-attention -> FFN."""

from __future__ import annotations

import torch
from torch import nn

from gausstr_core.model.deform_attn import MultiScaleDeformableAttention
from gausstr_core.model.layers import MLP

SELF_ATTN_SCOPES = ("view", "scene")


class DecoderLayer(nn.Module):
    """x = LN(x + Drop(DeformAttn(x + pos_cross))); x = LN(x + MHA(x + pos_self, x + pos_self, x));
    x = LN(x + FFN(x)).

    Queries are (B*N, Q, D), one row per view. Self-attention scope 'view' attends within each
    view's Q queries; 'scene' regroups the rows into (B, N*Q, D) so all Gaussians of a sample
    attend to each other.
    """

    def __init__(
        self, embed_dims: int, num_heads: int, num_levels: int, num_points: int, ffn_dims: int,
        dropout: float, self_attn_scope: str,
    ) -> None:
        super().__init__()
        if self_attn_scope not in SELF_ATTN_SCOPES:
            raise ValueError(f"self_attn_scope must be one of {SELF_ATTN_SCOPES}, got {self_attn_scope!r}")
        self.self_attn_scope = self_attn_scope
        self.cross_attn = MultiScaleDeformableAttention(embed_dims, num_heads, num_levels, num_points)
        self.cross_dropout = nn.Dropout(dropout)
        self.self_attn = nn.MultiheadAttention(embed_dims, num_heads, batch_first=True)
        self.ffn = MLP(embed_dims, ffn_dims, embed_dims)
        self.norm_cross = nn.LayerNorm(embed_dims)
        self.norm_self = nn.LayerNorm(embed_dims)
        self.norm_ffn = nn.LayerNorm(embed_dims)
        for module in (self.self_attn, self.ffn):
            for p in module.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    def forward(
        self, query: torch.Tensor, pos_cross: torch.Tensor, pos_self: torch.Tensor, ref: torch.Tensor,
        value_maps: list[torch.Tensor], num_views: int,
    ) -> torch.Tensor:
        """query, pos_cross, pos_self (B*N, Q, D); ref (B*N, Q, 2) in [0, 1]; value_maps levels x
        (B*N, D, h_l, w_l). Returns (B*N, Q, D)."""
        x = self.norm_cross(query + self.cross_dropout(self.cross_attn(query + pos_cross, ref, value_maps)))
        rows, q, d = x.shape
        group = (rows // num_views, num_views * q, d) if self.self_attn_scope == "scene" else (rows, q, d)
        xs = x.reshape(group)
        qk = xs + pos_self.reshape(group)
        attended = self.self_attn(qk, qk, xs, need_weights=False)[0]
        x = self.norm_self(x + attended.reshape(rows, q, d))
        return self.norm_ffn(x + self.ffn(x))
