"""Depth providers: tiny metric Depth Anything (transformers) and a fake Metric3D torch.hub directory."""

from __future__ import annotations

import pytest
import torch
from test_foundation_fakes import write_fake_metric3d_hub, write_tiny_depth_anything

from gausstr_core.foundation.base import DepthProvider
from gausstr_core.foundation.registry import build_depth_provider
from gausstr_core.foundation.weights import WeightsNotFoundError

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _intrinsics(batch: int, fx: float, width: int, height: int) -> torch.Tensor:
    k = torch.tensor([[fx, 0.0, width / 2], [0.0, fx, height / 2], [0.0, 0.0, 1.0]])
    return k.expand(batch, 3, 3).clone()


def test_depth_anything_metric(tmp_path) -> None:
    from transformers import AutoModelForDepthEstimation

    folder = write_tiny_depth_anything(tmp_path / "da_metric")
    provider = build_depth_provider({"name": "depth_anything", "weights": str(folder), "process_size": 56})
    assert isinstance(provider, DepthProvider)
    images = torch.rand(2, 3, 56, 84)
    depth = provider(images, _intrinsics(2, 60.0, 84, 56))
    assert depth.shape == (2, 56, 84)
    model = AutoModelForDepthEstimation.from_pretrained(str(folder), local_files_only=True).eval()
    with torch.no_grad():
        expected = model(pixel_values=(images - IMAGENET_MEAN) / IMAGENET_STD).predicted_depth
    torch.testing.assert_close(depth, expected, atol=1e-4, rtol=1e-4)
    # Other sizes: processed at a multiple of 14 (shorter side 56) and resized back.
    odd = provider(torch.rand(1, 3, 45, 70), _intrinsics(1, 60.0, 70, 45))
    assert odd.shape == (1, 45, 70) and torch.isfinite(odd).all() and (odd > 0).all()
    with pytest.raises(ValueError, match=r"intrinsics must be \(2, 3, 3\)"):
        provider(images, torch.eye(3))


def test_depth_anything_refuses_relative_and_missing(tmp_path) -> None:
    relative = write_tiny_depth_anything(tmp_path / "da_relative", kind="relative")
    with pytest.raises(ValueError, match="metric"):
        build_depth_provider({"name": "depth_anything", "weights": str(relative)})
    with pytest.raises(WeightsNotFoundError, match="Depth-Anything-V2-Metric-Outdoor"):
        build_depth_provider({"name": "depth_anything", "weights": str(tmp_path / "absent")})
    with pytest.raises(WeightsNotFoundError, match="could not be loaded"):
        build_depth_provider({"name": "depth_anything", "weights": "depth-anything/not-cached-offline"})


def _blocks_image(height: int, width: int, left: float, right: float) -> torch.Tensor:
    image = torch.empty(1, 3, height, width)
    image[..., : width // 2] = left
    image[..., width // 2 :] = right
    return image


def test_metric3d_canonical_focal_rescaling(tmp_path) -> None:
    hub = write_fake_metric3d_hub(tmp_path / "Metric3D")
    weights = tmp_path / "metric3d_fake.pth"
    torch.save({"model_state_dict": {"gain": torch.tensor(20.0)}}, weights)
    provider = build_depth_provider(
        {
            "name": "metric3d",
            "hub_dir": str(hub),
            "entry": "metric3d_vit_small",
            "weights": str(weights),
            "process_size": [64, 112],
        }
    )
    assert isinstance(provider, DepthProvider)
    height, width, fx = 56, 84, 500.0
    images = torch.cat([_blocks_image(height, width, 0.2, 0.8), _blocks_image(height, width, 0.5, 0.5)])
    depth = provider(images, _intrinsics(2, fx, width, height))
    assert depth.shape == (2, height, width)
    # Resize factor fitting 56 x 84 into 64 x 112 is 64 / 56: 64 x 96, padded by 8 columns each side.
    assert provider.model.seen_shapes[-1] == (2, 3, 64, 112)
    focal = fx * 96 / 84
    canonical_left, canonical_right = 1 + 20 * 0.2, 1 + 20 * 0.8
    scale = focal / 1000.0
    for col in (0, 1, 20, 38):  # left block, image border included: padding must not leak in
        torch.testing.assert_close(
            depth[0, :, col], torch.full((height,), canonical_left * scale), atol=1e-3, rtol=1e-4
        )
    for col in (45, 70, 83):
        torch.testing.assert_close(
            depth[0, :, col], torch.full((height,), canonical_right * scale), atol=1e-3, rtol=1e-4
        )
    torch.testing.assert_close(depth[1], torch.full((height, width), (1 + 20 * 0.5) * scale), atol=1e-3, rtol=1e-4)
    # Twice the focal length -> twice the metric depth for the same picture.
    doubled = provider(images, _intrinsics(2, 2 * fx, width, height))
    torch.testing.assert_close(doubled, 2 * depth)


def test_metric3d_errors(tmp_path) -> None:
    hub = write_fake_metric3d_hub(tmp_path / "Metric3D")
    with pytest.raises(WeightsNotFoundError, match="pretrained weights unavailable"):
        build_depth_provider({"name": "metric3d", "hub_dir": str(hub), "entry": "metric3d_vit_small"})
    with pytest.raises(WeightsNotFoundError, match="YvanYin/Metric3D"):
        build_depth_provider({"name": "metric3d", "hub_dir": str(tmp_path / "absent")})
    incomplete = tmp_path / "incomplete.pth"
    torch.save({"model_state_dict": {"other": torch.tensor(1.0)}}, incomplete)
    with pytest.raises(ValueError, match="lacks 1 weights"):
        build_depth_provider(
            {"name": "metric3d", "hub_dir": str(hub), "entry": "metric3d_vit_small", "weights": str(incomplete)}
        )
