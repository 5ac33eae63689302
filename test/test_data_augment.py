"""Resize/crop augmentation keeps images, maps and original_to_input consistent."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gausstr_core.data.augment import ResizeCrop, plan_resize_crop
from gausstr_core.geometry import project_points


def _smooth_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(3, H, W) smooth random image (low-frequency, so bilinear resampling barely changes values)."""
    coarse = torch.rand(1, 3, 5, 8, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0]


def _sample(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear values (N, C) of a (C, H, W) image at continuous pixels uv (N, 2), centres at +0.5."""
    height, width = image.shape[-2:]
    grid = torch.stack([uv[:, 0] / width * 2 - 1, uv[:, 1] / height * 2 - 1], -1)
    return F.grid_sample(image[None], grid[None, None], align_corners=False)[0, :, 0].T


K = torch.tensor([[126.6, 0.0, 81.6], [0.0, 126.6, 49.2], [0.0, 0.0, 1.0]])
CAM2EGO = torch.tensor([[0.0, 0.0, 1.0, 1.7], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 1.5], [0.0, 0.0, 0.0, 1.0]])


@pytest.mark.parametrize(
    "plan",
    [
        plan_resize_crop((90, 160), (63, 112)),  # plain resize (0.7)
        plan_resize_crop((90, 160), (56, 96), scale=0.7),  # resize, centred crop
        plan_resize_crop((90, 160), (120, 200), scale=1.4, offset=(6, 20)),  # upscale, explicit crop
    ],
)
def test_points_project_onto_the_same_content(plan: ResizeCrop) -> None:
    image = _smooth_image(90, 160)
    augmented = plan.image(image)
    assert augmented.shape == (3, *plan.out_size)
    gen = torch.Generator().manual_seed(1)
    points = torch.stack(
        [
            torch.rand(200, generator=gen) * 30 + 5,
            torch.randn(200, generator=gen) * 4,
            torch.rand(200, generator=gen) * 3,
        ],
        -1,
    )  # ego frame, in front of the camera
    uv_orig, depth = project_points(points, CAM2EGO, K, torch.eye(3))
    uv_aug, depth_aug = project_points(points, CAM2EGO, K, plan.matrix)
    torch.testing.assert_close(depth, depth_aug)
    margin = 2.0  # stay away from borders, where resampling clamps
    ok = (depth > 0) & (uv_aug >= margin).all(-1) & (uv_aug[:, 0] < plan.out_size[1] - margin)
    ok &= uv_aug[:, 1] < plan.out_size[0] - margin
    ok &= (uv_orig >= margin).all(-1) & (uv_orig[:, 0] < 160 - margin) & (uv_orig[:, 1] < 90 - margin)
    assert ok.sum() > 30
    before, after = _sample(image, uv_orig[ok]), _sample(augmented, uv_aug[ok])
    assert (before - after).abs().max() < 0.02
    # A wrong matrix (ignoring the crop / scale) is caught by the same check.
    uv_wrong, _ = project_points(points, CAM2EGO, K, torch.eye(3))
    inside = ok & (uv_wrong[:, 0] < plan.out_size[1] - 1) & (uv_wrong[:, 1] < plan.out_size[0] - 1)
    if plan.matrix[0, 0] != 1:
        assert (_sample(augmented, uv_wrong[inside]) - _sample(image, uv_orig[inside])).abs().max() > 0.05


def test_depth_labels_and_features_follow_the_image() -> None:
    plan = plan_resize_crop((90, 160), (40, 80), scale=0.6, offset=(7, 8))
    # A depth map made of two constant halves keeps exactly those two values (nearest, no mixing).
    depth = torch.full((90, 160), 5.0)
    depth[:, 80:] = 20.0
    depth[:3] = 0.0  # invalid stays invalid
    out = plan.depth(depth)
    assert set(out.unique().tolist()) <= {0.0, 5.0, 20.0}
    # Left/right boundary sits where original_to_input maps original column 80.
    boundary = float(plan.matrix[0, 0] * 80 + plan.matrix[0, 2])
    cols = torch.arange(80) + 0.5
    torch.testing.assert_close(out[20], torch.where(cols < boundary, 5.0, 20.0))
    labels = (torch.arange(160) // 16).expand(90, 160).long()
    assert plan.labels(labels).dtype == torch.long
    # A lower-resolution depth cache (same full frame) lands on the same output grid.
    assert plan.depth(F.interpolate(depth[None, None], size=(45, 80), mode="nearest")[0, 0]).shape == (40, 80)
    # Features at patch resolution: a map that varies along x maps like the image at 1/patch.
    patch = 8
    feats = torch.linspace(0, 1, 20).expand(4, 12, 20)  # full frame at 1/8 of 160x96-ish
    out = plan.features(feats, patch)
    assert out.shape == (4, 40 // patch, 80 // patch)
    assert (out[0, 0, 1:] > out[0, 0, :-1]).all()


def test_batched_and_bad_plans() -> None:
    plan = plan_resize_crop((90, 160), (45, 80))
    batch = torch.rand(2, 6, 3, 90, 160)
    assert plan.image(batch).shape == (2, 6, 3, 45, 80)
    torch.testing.assert_close(plan.matrix, torch.tensor([[0.5, 0, 0], [0, 0.5, 0], [0, 0, 1.0]]))
    with pytest.raises(ValueError, match="crop window"):
        plan_resize_crop((90, 160), (60, 100), scale=0.5)
    with pytest.raises(ValueError, match="needs a scale"):
        plan_resize_crop((90, 160), (45, 80), offset=(1, 1))
    with pytest.raises(ValueError, match="at least 2 dims"):
        plan.depth(torch.zeros(5))
