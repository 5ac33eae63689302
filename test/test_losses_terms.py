"""Each loss term against values worked out by hand, and the PCA basis."""

import math

import pytest
import torch

from gausstr_core.losses import depth_loss, feature_loss, pca_project, pca_target, segment_loss


def test_feature_loss_hand_values():
    target = torch.tensor([1.0, 0.0]).reshape(1, 1, 2, 1, 1)
    rendered = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, math.sqrt(3)]]).T.reshape(1, 1, 2, 2, 2)
    loss = feature_loss(rendered, pca_target(target, torch.eye(2, dtype=torch.float64), (2, 2)))
    assert loss.item() == pytest.approx((0 + 1 + 2 + 0.5) / 4)


def test_feature_loss_upsamples_bilinearly_after_projection():
    # cells [1, 9, 0] and [0, 9, 1]; the basis keeps channels 0 and 2 -> [1, 0] and [0, 1]
    target = torch.tensor([[1.0, 0.0], [9.0, 9.0], [0.0, 1.0]]).reshape(1, 1, 3, 1, 2)
    basis = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    rendered = torch.tensor([1.0, 0.0]).reshape(1, 1, 2, 1, 1).expand(1, 1, 2, 1, 4)
    # half-pixel bilinear x2 upsampling of [a, b]: a, 0.75 a + 0.25 b, 0.25 a + 0.75 b, b
    cosines = [1.0, 0.75 / math.sqrt(0.75**2 + 0.25**2), 0.25 / math.sqrt(0.75**2 + 0.25**2), 0.0]
    expected = sum(1 - c for c in cosines) / 4
    assert feature_loss(rendered, pca_target(target, basis, (1, 4))).item() == pytest.approx(expected, rel=1e-6)


def test_feature_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="pca_target"):
        pca_target(torch.zeros(1, 1, 3, 2, 2), torch.eye(4, 2, dtype=torch.float64), (4, 4))
    with pytest.raises(ValueError, match="feature_loss"):
        feature_loss(torch.zeros(1, 1, 2, 4, 4), torch.zeros(1, 1, 3, 4, 4))


def test_depth_loss_hand_values():
    rendered = torch.tensor([2.0, 1.0, 0.5, 7.0]).reshape(1, 1, 1, 4)
    target = torch.tensor([1.0, 1.0, 60.0, 0.0]).reshape(1, 1, 1, 4)  # 60 m -> 1e-3; 0 ignored
    silog, l1 = depth_loss(rendered, target, far_depth=51.2, far_target=1e-3)
    d = [math.log(2.0), 0.0, math.log(0.5 / 1e-3)]
    mean, mean_sq = sum(d) / 3, sum(x * x for x in d) / 3
    assert silog.item() == pytest.approx(math.sqrt(mean_sq - 0.5 * mean**2), rel=1e-6)
    assert l1.item() == pytest.approx((1.0 + 0.0 + 0.499) / 3, rel=1e-6)


def test_depth_loss_is_finite_for_empty_pixels_and_zero_when_exact():
    target = torch.tensor([[[[3.0, 5.0], [8.0, 0.0]]]])
    rendered = torch.tensor([[[[0.0, 5.0], [8.0, 1.0]]]], requires_grad=True)
    silog, l1 = depth_loss(rendered, target)
    (silog + l1).backward()
    assert torch.isfinite(rendered.grad).all() and rendered.grad[0, 0, 0, 0] < 0
    silog, l1 = depth_loss(target.clone(), target)
    assert silog.item() == pytest.approx(0.0, abs=1e-5) and l1.item() == 0.0


def test_depth_loss_is_per_view_then_mean_with_the_authors_eps():
    """Two views of different scale: the mean of per-view silogs, not the silog of the pooled pixels;
    an uncovered pixel (rendered 0) is clamped to 1e-6 (mmseg SiLogLoss eps), not 1e-4."""
    rendered = torch.tensor([[[[2.0, 2.0, 4.0]], [[1.0, 3.0, 0.0]]]])  # (B=1, N=2, 1, 3)
    target = torch.tensor([[[[1.0, 1.0, 1.0]], [[1.0, 1.0, 2.0]]]])
    silog, l1 = depth_loss(rendered, target)

    def view_silog(d: list[float]) -> float:
        mean, mean_sq = sum(d) / len(d), sum(x * x for x in d) / len(d)
        return math.sqrt(mean_sq - 0.5 * mean**2)

    first = view_silog([math.log(2.0), math.log(2.0), math.log(4.0)])
    second = view_silog([0.0, math.log(3.0), math.log(1e-6 / 2.0)])
    assert silog.item() == pytest.approx((first + second) / 2, rel=1e-5)
    pooled = view_silog([math.log(2.0), math.log(2.0), math.log(4.0), 0.0, math.log(3.0), math.log(1e-6 / 2.0)])
    assert silog.item() != pytest.approx(pooled, rel=1e-3)
    assert l1.item() == pytest.approx((1 + 1 + 3 + 0 + 2 + 2) / 6, rel=1e-6)
    # a target of 1e-5 (below 1e-4, above 1e-6) counts
    silog_small, _ = depth_loss(torch.tensor([[[[1e-5, 1.0]]]]), torch.tensor([[[[1e-5, 1.0]]]]))
    assert silog_small.item() == pytest.approx(0.0, abs=1e-5)
    far, _ = depth_loss(torch.tensor([[[[2e-5]]]]), torch.tensor([[[[1e-5]]]]))
    assert far.item() == pytest.approx(math.sqrt(0.5) * math.log(2.0), rel=1e-4)


def test_segment_loss_hand_values():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(3.0), 0.0], [5.0, -5.0]]).reshape(1, 1, 1, 3, 2)
    labels = torch.tensor([1, 1, 0]).reshape(1, 1, 1, 3)
    expected = (-math.log(0.75) - math.log(0.25)) / 2
    assert segment_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    assert segment_loss(logits, torch.zeros_like(labels)).item() == 0.0
    with pytest.raises(ValueError, match="labels"):
        segment_loss(logits, labels[..., :2])


def test_pca_reproduces_low_rank_data():
    gen = torch.Generator().manual_seed(0)
    f64 = dict(generator=gen, dtype=torch.float64)
    data = torch.randn(300, 3, **f64) @ torch.randn(3, 16, **f64)
    basis = pca_project(data, q=3)
    assert basis.shape == (16, 3) and basis.dtype == torch.float64
    torch.testing.assert_close(basis.T @ basis, torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(data @ basis @ basis.T, data, atol=1e-8, rtol=1e-8)  # rank 3 data


def test_pca_accepts_maps_and_caps_q():
    gen = torch.Generator().manual_seed(1)
    f64 = dict(generator=gen, dtype=torch.float64)
    low_rank = torch.randn(4, 5, 6, 2, **f64) @ torch.randn(2, 8, **f64)
    maps = low_rank.permute(0, 3, 1, 2)
    basis = pca_project(maps, q=128)  # (B*N, C=8, h, w): q capped at C
    assert basis.shape == (8, 8)
    flat = low_rank.reshape(-1, 8)
    top = pca_project(maps, q=2)
    torch.testing.assert_close(flat @ top @ top.T, flat, atol=1e-8, rtol=1e-8)
    with pytest.raises(ValueError, match="pca_project"):
        pca_project(torch.zeros(3, 4, 5))
