"""The PyTorch renderer against gsplat.rasterization itself (needs CUDA)."""

import math

import pytest
import torch

from gausstr_core.render import render_gaussians
from gausstr_core.render.gsplat_backend import gsplat_works

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

OPTICAL_TO_EGO = torch.tensor([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])


def _scene(channels: int):
    """3 views of 150 Gaussians, 40 x 56 pixels; `channels` > 32 exercises gsplat's channel chunks."""
    gen = torch.Generator().manual_seed(0)
    views, gaussians = 3, 150
    cam2ego = torch.eye(4).repeat(1, views, 1, 1)
    for n in range(views):
        yaw = math.radians(25.0 * (n - 1))
        rz = torch.tensor([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
        cam2ego[0, n, :3, :3] = rz @ OPTICAL_TO_EGO
        cam2ego[0, n, :3, 3] = torch.tensor([0.5 * n, 0.0, 1.5])
    means = torch.randn(1, gaussians, 3, generator=gen) * torch.tensor([4.0, 3.0, 0.8]) + torch.tensor([8.0, 0, 1.0])
    scene = dict(
        means=means,
        quats=torch.randn(1, gaussians, 4, generator=gen),
        scales=torch.rand(1, gaussians, 3, generator=gen) * 0.5 + 0.05,
        opacities=torch.rand(1, gaussians, generator=gen) * 0.9 + 0.05,
        colors=torch.randn(1, gaussians, channels, generator=gen),
        cam2ego=cam2ego,
        intrinsics=torch.tensor([[120.0, 0, 56], [0, 120.0, 40], [0, 0, 1]]).repeat(1, views, 1, 1),
        original_to_input=torch.tensor([[0.5, 0, 0], [0, 0.5, 0], [0, 0, 1]]).repeat(1, views, 1, 1),
    )
    return {k: v.cuda() for k, v in scene.items()}


@pytest.mark.parametrize("channels", [8, 40])
def test_torch_path_matches_gsplat_rasterization(channels):
    assert gsplat_works(torch.device("cuda"))
    scene = _scene(channels)
    leaves = ("means", "scales", "opacities", "colors")
    results = {}
    for backend in ("gsplat", "torch"):
        inputs = {k: (v.clone().requires_grad_() if k in leaves else v) for k, v in scene.items()}
        out = render_gaussians(**inputs, image_size=(40, 56), backend=backend)
        weights = torch.linspace(-1, 1, out.features.numel(), device="cuda").reshape(out.features.shape)
        ((out.features * weights).sum() + out.depth.sum() * 0.1 + out.alpha.sum()).backward()
        results[backend] = (out, {k: inputs[k].grad for k in leaves})
    (fast, fast_grads), (ours, our_grads) = results["gsplat"], results["torch"]
    assert fast.alpha.max() > 0.9 and (fast.alpha < 1e-6).any()
    torch.testing.assert_close(ours.features, fast.features, atol=2e-4, rtol=1e-3)
    torch.testing.assert_close(ours.depth, fast.depth, atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(ours.alpha, fast.alpha, atol=2e-5, rtol=1e-4)
    for name in leaves:
        scale = fast_grads[name].abs().max()
        torch.testing.assert_close(our_grads[name], fast_grads[name], atol=2e-3 * scale, rtol=1e-2, msg=name)
    auto = render_gaussians(**scene, image_size=(40, 56))
    assert torch.equal(auto.features, fast.features.detach())
