"""Multi-scale deformable attention: sample-first evaluation vs the textbook order and vs loops."""

from __future__ import annotations

import pytest
import torch

from gausstr_core.model.deform_attn import MultiScaleDeformableAttention, reference_ms_deform_attn

SHAPES = [(6, 8), (3, 4), (2, 2)]


def _setup(seed: int = 0, dims: int = 8, heads: int = 2, points: int = 3, queries: int = 5, batch: int = 2):
    torch.manual_seed(seed)
    attn = MultiScaleDeformableAttention(dims, heads, len(SHAPES), points).double()
    with torch.no_grad():  # leave the zero init so offsets/weights depend on the query; push some points outside
        attn.sampling_offsets.weight.normal_(0, 0.5)
        attn.sampling_offsets.bias.mul_(1.5)
        attn.attention_weights.weight.normal_(0, 0.5)
        attn.value_proj.bias.normal_()
        attn.output_proj.bias.normal_()
    maps = [torch.randn(batch, dims, h, w, dtype=torch.float64) for h, w in SHAPES]
    query = torch.randn(batch, queries, dims, dtype=torch.float64)
    ref = torch.rand(batch, queries, 2, dtype=torch.float64)
    return attn, query, ref, maps


def _bilinear_zero_pad(img: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """img (C, h, w) at continuous pixel coords (x, y) with pixel centres at integers; zeros outside."""
    h, w = img.shape[-2:]
    x0, y0 = int(torch.floor(torch.tensor(x))), int(torch.floor(torch.tensor(y)))
    out = torch.zeros(img.shape[0], dtype=img.dtype)
    for xi, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
        for yi, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
            if 0 <= xi < w and 0 <= yi < h:
                out += wx * wy * img[:, yi, xi]
    return out


def _loop_reference(attn, query, ref, maps) -> torch.Tensor:
    """Deformable attention written out with explicit loops over batch, query, head, level, point."""
    b, q, d = query.shape
    heads, levels, points = attn.num_heads, attn.num_levels, attn.num_points
    dh = d // heads
    offsets = attn.sampling_offsets(query).view(b, q, heads, levels, points, 2)
    logits = attn.attention_weights(query).view(b, q, heads, levels * points)
    values = [attn.value_proj(m.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) for m in maps]  # per pixel
    out = torch.zeros(b, q, d, dtype=query.dtype)
    for bi in range(b):
        for qi in range(q):
            for h in range(heads):
                weights = torch.softmax(logits[bi, qi, h], 0).view(levels, points)
                for lv, vmap in enumerate(values):
                    mh, mw = vmap.shape[-2:]
                    for p in range(points):
                        u = float(ref[bi, qi, 0]) * mw + float(offsets[bi, qi, h, lv, p, 0])  # pixels
                        v = float(ref[bi, qi, 1]) * mh + float(offsets[bi, qi, h, lv, p, 1])
                        sample = _bilinear_zero_pad(vmap[bi, h * dh:(h + 1) * dh], u - 0.5, v - 0.5)
                        out[bi, qi, h * dh:(h + 1) * dh] += weights[lv, p] * sample
    return attn.output_proj(out)


@torch.no_grad()
def test_matches_explicit_loops() -> None:
    attn, query, ref, maps = _setup()
    torch.testing.assert_close(attn(query, ref, maps), _loop_reference(attn, query, ref, maps))


@torch.no_grad()
def test_matches_textbook_order_including_points_outside_the_maps() -> None:
    attn, query, ref, maps = _setup(seed=1, dims=16, heads=4, points=4, queries=40)
    grids, _ = attn.sampling_grid(query, ref, maps)
    outside = torch.cat([(g.abs() > 1).any(-1).flatten() for g in grids])
    assert outside.any() and not outside.all()  # the border (bias mass) handling is exercised
    torch.testing.assert_close(attn(query, ref, maps), reference_ms_deform_attn(attn, query, ref, maps))


def test_gradients_match_textbook_order() -> None:
    attn, query, ref, maps = _setup(seed=2)
    inputs = [query.requires_grad_(), *(m.requires_grad_() for m in maps)]
    ours = torch.autograd.grad(attn(query, ref, maps).square().sum(), [*inputs, *attn.parameters()])
    theirs = torch.autograd.grad(
        reference_ms_deform_attn(attn, query, ref, maps).square().sum(), [*inputs, *attn.parameters()]
    )
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


@torch.no_grad()
def test_initial_offsets_ring_the_reference_point() -> None:
    """With zero query the sampling points sit at (i + 1) pixels from the reference along each head's direction."""
    attn = MultiScaleDeformableAttention(16, 4, 2, 3)
    maps = [torch.zeros(1, 16, 10, 20), torch.zeros(1, 16, 5, 10)]
    grids, weights = attn.sampling_grid(torch.zeros(1, 1, 16), torch.full((1, 1, 2), 0.5), maps)
    pix = (grids[0][0, 0] + 1) / 2 * torch.tensor([20.0, 10.0]) - torch.tensor([10.0, 5.0])  # (heads, points, 2)
    radius = pix.abs().max(-1).values
    torch.testing.assert_close(radius, torch.tensor([1.0, 2.0, 3.0]).expand(4, 3))
    torch.testing.assert_close(weights, torch.full((1, 1, 4, 2, 3), 1 / 6))


def test_wrong_number_of_levels_is_an_error() -> None:
    attn, query, ref, maps = _setup()
    with pytest.raises(ValueError, match="expected 3 value maps, got 2"):
        attn(query, ref, maps[:2])
