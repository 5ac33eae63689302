"""The PyTorch projection against gsplat's own pure-PyTorch projection (`_fully_fused_projection`)."""

import pytest
import torch

from gausstr_core.render import project_gaussians

torch_impl = pytest.importorskip("gsplat.cuda._torch_impl")
NEAR = 0.01  # project_gaussians' default near plane, m


def _scene(seed: int = 0, batch: int = 2, views: int = 3, gaussians: int = 40):
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(batch, gaussians, 3, generator=gen) * torch.tensor([2.0, 2.0, 3.0]) + torch.tensor([0, 0, 4.0])
    quats = torch.randn(batch, gaussians, 4, generator=gen)
    scales = torch.rand(batch, gaussians, 3, generator=gen) * 0.5 + 0.01
    angles = torch.rand(batch, views, generator=gen) * 0.6 - 0.3
    viewmats = torch.eye(4).repeat(batch, views, 1, 1)
    viewmats[..., 0, 0], viewmats[..., 0, 2] = torch.cos(angles), torch.sin(angles)
    viewmats[..., 2, 0], viewmats[..., 2, 2] = -torch.sin(angles), torch.cos(angles)
    viewmats[..., :3, 3] = torch.randn(batch, views, 3, generator=gen) * 0.3
    ks = torch.tensor([[30.0, 0, 17], [0, 28.0, 11], [0, 0, 1]]).repeat(batch, views, 1, 1)
    return means, quats, scales, viewmats, ks


def test_projection_matches_gsplat_torch_impl():
    means, quats, scales, viewmats, ks = _scene()
    size = (24, 32)
    ours = project_gaussians(means, quats, scales, viewmats, ks, size, eps2d=0.3, near=0.5, far=8.0)
    covars, _ = torch_impl._quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    radii, means2d, depths, conics, _ = torch_impl._fully_fused_projection(
        means, covars, viewmats, ks, size[1], size[0], eps2d=0.3, near_plane=0.5, far_plane=8.0
    )
    visible = (radii > 0).all(-1)
    # the scene exercises culling: behind near, beyond far, off-image, and visible Gaussians
    assert 0 < visible.sum() < visible.numel()
    assert torch.equal(ours.radii, radii)
    torch.testing.assert_close(ours.depths, depths)
    torch.testing.assert_close(ours.means2d[visible], means2d[visible], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ours.conics[visible], conics[visible], rtol=1e-4, atol=1e-6)


def test_projection_gradients_match_gsplat_torch_impl():
    means, quats, scales, viewmats, ks = (t.double() for t in _scene(seed=1))
    size = (24, 32)

    def grads(project):
        leaves = [means.clone().requires_grad_(), scales.clone().requires_grad_()]
        means2d, conics, depths = project(*leaves)
        # as in rendering, Gaussians behind the near plane (culled, some behind the camera) get no upstream gradient
        in_front = (depths.detach() > NEAR).to(depths.dtype)
        (in_front * (means2d.sin().sum(-1) + conics.cos().sum(-1) + depths.square())).sum().backward()
        return [leaf.grad for leaf in leaves]

    def ours(m, s):
        p = project_gaussians(m, quats, s, viewmats, ks, size, near=NEAR)
        return p.means2d, p.conics, p.depths

    def gsplat(m, s):
        covars, _ = torch_impl._quat_scale_to_covar_preci(quats, s, compute_preci=False)
        _, means2d, depths, conics, _ = torch_impl._fully_fused_projection(m, covars, viewmats, ks, size[1], size[0])
        return means2d, conics, depths

    assert (means[..., 2] < NEAR).any()  # the scene has Gaussians behind the cameras
    for a, b in zip(grads(ours), grads(gsplat)):
        torch.testing.assert_close(a, b)


def test_a_gaussian_on_the_camera_plane_gets_finite_gradients():
    """z = 0 in one camera (culled there) while another sees it: 1/z must not turn its gradient into NaN."""
    means, quats, scales, viewmats, ks = (t.double() for t in _scene(seed=2, batch=1, views=2, gaussians=3))
    viewmats[0, 1] = torch.eye(4, dtype=viewmats.dtype)
    means[0, 0] = torch.tensor([0.5, 0.2, 0.0])  # on the second camera's plane; in front of the first
    viewmats[0, 0, :3, :3] = torch.eye(3)
    viewmats[0, 0, :3, 3] = torch.tensor([0.0, 0.0, 3.0])
    means = means.requires_grad_()
    p = project_gaussians(means, quats, scales, viewmats, ks, (24, 32), near=0.0)
    assert p.radii[0, 1, 0].eq(0).all() and p.radii[0, 0, 0].gt(0).all()
    visible = (p.radii > 0).all(-1).to(means.dtype)
    (visible * (p.means2d.sum(-1) + p.conics.sum(-1))).sum().backward()
    assert torch.isfinite(means.grad).all() and means.grad[0, 0].abs().sum() > 0


def test_opacity_aware_radii_follow_gsplat_cuda_rule():
    means, quats, scales, viewmats, ks = _scene(seed=2)
    opacities = torch.rand(means.shape[:2], generator=torch.Generator().manual_seed(3))
    opacities[:, :5] = 1e-3  # below 1/255: never drawn
    size = (24, 32)
    plain = project_gaussians(means, quats, scales, viewmats, ks, size)
    aware = project_gaussians(means, quats, scales, viewmats, ks, size, opacities=opacities)
    assert (aware.radii[:, :, :5] == 0).all()
    # the 2D covariance is the inverse of the conic; the extent shrinks to sqrt(2 ln(255 o))
    a, b, c = plain.conics.double().unbind(-1)
    det = a * c - b * b
    sigma = torch.stack([c / det, a / det], -1).sqrt()
    extend = torch.clamp(torch.sqrt(2 * torch.log(opacities.double() * 255).clamp(min=0)), max=3.33)
    expected = torch.ceil(extend[:, None, :, None] * sigma).int()
    keep = (aware.radii > 0).all(-1)
    assert keep.sum() > 10
    diff = (aware.radii[keep] - expected[keep]).abs()
    assert diff.max() <= 1 and (diff == 0).float().mean() > 0.97  # ceil of float32 vs float64 values
    assert (aware.radii <= plain.radii).all() and (aware.radii < plain.radii).any()
