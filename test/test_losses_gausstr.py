"""gausstr_losses: per-layer wiring, term bookkeeping and gradient flow through the renderer."""

import math

import pytest
import torch

from gausstr_core.config import TrainConfig
from gausstr_core.gaussians import Gaussians
from gausstr_core.geometry import covariance_from_scale_rotation, quat_to_rotmat
from gausstr_core.losses import gausstr_losses
from gausstr_core.render import render_gaussians

OPTICAL_TO_EGO = torch.tensor([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])
H, W, C = 16, 20, 12


def _rig(views: int = 2):
    cam2ego = torch.eye(4).repeat(1, views, 1, 1)
    for n in range(views):
        yaw = math.radians(30.0 * n)
        rz = torch.tensor([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
        cam2ego[0, n, :3, :3] = rz @ OPTICAL_TO_EGO
    intrinsics = torch.tensor([[40.0, 0, 20], [0, 40.0, 16], [0, 0, 1]]).repeat(1, views, 1, 1)
    original_to_input = torch.tensor([[0.5, 0, 0], [0, 0.5, 0], [0, 0, 1]]).repeat(1, views, 1, 1)
    return cam2ego, intrinsics, original_to_input


def _layer(seed: int, gaussians: int = 40) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(1, gaussians, 3, generator=gen) * torch.tensor([1.0, 1.5, 0.3]) + torch.tensor([5.0, 1.0, 0.0])
    quats = torch.randn(1, gaussians, 4, generator=gen)
    scales = torch.rand(1, gaussians, 3, generator=gen) * 0.4 + 0.2
    return Gaussians(
        means=means.requires_grad_(),
        scales=scales,
        quats=quats,
        covariances=covariance_from_scale_rotation(scales, quat_to_rotmat(quats)),
        opacities=(torch.rand(1, gaussians, generator=gen) * 0.6 + 0.2).requires_grad_(),
        features=torch.randn(1, gaussians, C, generator=gen).requires_grad_(),
    )


def _targets(views: int = 2):
    gen = torch.Generator().manual_seed(7)
    features = torch.randn(1, views, C, H // 4, W // 4, generator=gen)
    depths = torch.rand(1, views, H, W, generator=gen) * 20 + 1
    depths[..., :3, :] = 80.0  # sky rows beyond far_depth
    return features, depths


class _Head(torch.nn.Module):
    def __init__(self, dims: int, classes: int, layers: int) -> None:
        super().__init__()
        self.linears = torch.nn.ModuleList(torch.nn.Linear(dims, classes) for _ in range(layers))
        self.calls = []

    def forward(self, features: torch.Tensor, layer: int) -> torch.Tensor:
        self.calls.append((tuple(features.shape), layer))
        return self.linears[layer](features)


def test_losses_sum_layers_and_gradients_reach_the_gaussians():
    cfg = TrainConfig(pca_dims=6)
    layers = [_layer(0), _layer(1)]
    features, depths = _targets()
    cam2ego, intrinsics, original_to_input = _rig()
    labels = torch.randint(0, 4, (1, 2, H, W), generator=torch.Generator().manual_seed(3))
    head = _Head(6, 4, 2)
    total, terms = gausstr_losses(layers, features, depths, cam2ego, intrinsics, original_to_input, cfg,
                                  segmentation=labels, segment_head=head)
    assert head.calls == [((1, 2, H, W, 6), 0), ((1, 2, H, W, 6), 1)]
    for i in range(2):
        t = {k: terms[f"layer{i}/{k}"] for k in ("feature", "depth_silog", "depth_l1", "segment", "total")}
        expected = 5.0 * t["feature"] + (t["depth_silog"] + 0.2 * t["depth_l1"]) + t["segment"]
        torch.testing.assert_close(t["total"], expected)
        assert all(v.item() > 0 for v in t.values())
    for name in ("feature", "depth_silog", "depth_l1", "segment", "total"):
        torch.testing.assert_close(terms[name], terms[f"layer0/{name}"] + terms[f"layer1/{name}"])
    torch.testing.assert_close(total.detach(), terms["total"])

    total.backward()
    for layer in layers:
        for name in ("means", "opacities", "features"):
            grad = getattr(layer, name).grad
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert head.linears[1].weight.grad.abs().sum() > 0


def test_one_pca_basis_shared_by_all_layers():
    cfg = TrainConfig(pca_dims=5)
    seen = []

    def spy_render(**kwargs):
        seen.append(kwargs)
        return render_gaussians(**kwargs, backend="torch")

    layers = [_layer(0), _layer(1), _layer(2)]
    features, depths = _targets()
    torch.manual_seed(0)
    gausstr_losses(layers, features, depths, *_rig(), cfg, render_fn=spy_render)
    assert len(seen) == 3
    assert all(k["colors"].shape == (1, 40, 5) and k["image_size"] == (H, W) for k in seen)
    assert all(k["near"] == cfg.render_near and k["far"] == cfg.render_far for k in seen)
    # the same basis V maps each layer's features: colors = features @ V for one V
    basis = torch.linalg.lstsq(layers[0].features.detach()[0].double(), seen[0]["colors"].detach()[0].double()).solution
    for layer, kwargs in zip(layers[1:], seen[1:]):
        torch.testing.assert_close(kwargs["colors"].detach()[0].double(), layer.features.detach()[0].double() @ basis,
                                   atol=1e-4, rtol=1e-4)


def test_losses_reject_inconsistent_inputs():
    features, depths = _targets()
    cfg = TrainConfig(pca_dims=4)
    with pytest.raises(ValueError, match="segment_head"):
        gausstr_losses([_layer(0)], features, depths, *_rig(), cfg, segmentation=torch.zeros(1, 2, H, W).long())
    with pytest.raises(ValueError, match="layers"):
        gausstr_losses([], features, depths, *_rig(), cfg)
