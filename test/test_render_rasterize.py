"""The PyTorch splatting path: brute-force per-pixel reference, gradients, output semantics."""

import math

import pytest
import torch

from gausstr_core.render import render_gaussians
from gausstr_core.render.gsplat_backend import gsplat_works
from gausstr_core.render.rasterize_torch import rasterize_torch

torch_impl = pytest.importorskip("gsplat.cuda._torch_impl")

# optical (z fwd, x right, y down) -> ego (x fwd, y left, z up)
OPTICAL_TO_EGO = torch.tensor([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])


def _cameras(views: int, dtype=torch.float32):
    cam2ego = torch.eye(4, dtype=dtype).repeat(1, views, 1, 1)
    for n in range(views):
        yaw = math.radians(20.0 * n)
        rz = torch.tensor([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
        cam2ego[0, n, :3, :3] = (rz @ OPTICAL_TO_EGO).to(dtype)
        cam2ego[0, n, :3, 3] = torch.tensor([0.3 * n, 0.1, 1.5], dtype=dtype)
    intrinsics = torch.tensor([[60.0, 0, 19], [0, 58.0, 15], [0, 0, 1]], dtype=dtype).repeat(1, views, 1, 1)
    original_to_input = torch.tensor([[0.5, 0, -0.5], [0, 0.5, 0.5], [0, 0, 1]], dtype=dtype).repeat(1, views, 1, 1)
    return cam2ego, intrinsics, original_to_input


def _scene(seed: int = 0, gaussians: int = 24, channels: int = 3, views: int = 2):
    """Gaussians in front of the rig; a crowd of opaque ones saturates some pixels."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(1, gaussians, 3, generator=gen) * torch.tensor([2.0, 1.0, 0.4]) + torch.tensor([5.0, 0, 1.5])
    means[0, 0] = torch.tensor([-3.0, 0.0, 1.5])  # behind the cameras
    means[0, 1] = torch.tensor([40.0, 0.0, 1.5])  # beyond far
    means[0, 2:14] = torch.tensor([4.0, 0.2, 1.6]) + 0.05 * torch.randn(12, 3, generator=gen)
    quats = torch.randn(1, gaussians, 4, generator=gen)
    scales = torch.rand(1, gaussians, 3, generator=gen) * 0.3 + 0.05
    opacities = torch.rand(1, gaussians, generator=gen) * 0.5 + 0.2
    opacities[0, 2:14] = 0.6
    opacities[0, 14] = 0.9999  # clamped to 0.999
    opacities[0, 15] = 0.002  # below 1/255
    colors = torch.randn(1, gaussians, channels, generator=gen)
    cam2ego, intrinsics, original_to_input = _cameras(views)
    return dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
                cam2ego=cam2ego, intrinsics=intrinsics, original_to_input=original_to_input, image_size=(14, 18),
                near=0.1, far=20.0)


def _brute_force(s):
    """gsplat's projection and compositing rule, pixel by pixel. Returns (features + depth, alpha, stops)."""
    viewmats = torch.linalg.inv(s["cam2ego"])
    ks = s["original_to_input"] @ s["intrinsics"]
    height, width = s["image_size"]
    covars, _ = torch_impl._quat_scale_to_covar_preci(s["quats"], s["scales"], compute_preci=False)
    radii, means2d, depths, conics, _ = torch_impl._fully_fused_projection(
        s["means"], covars, viewmats, ks, width, height, near_plane=s["near"], far_plane=s["far"]
    )
    views, channels = viewmats.shape[1], s["colors"].shape[-1]
    out = torch.zeros(1, views, channels + 1, height, width)
    alpha_out = torch.zeros(1, views, height, width)
    stops = 0
    opac = s["opacities"][0].tolist()
    for n in range(views):
        order = [g for g in torch.argsort(depths[0, n]).tolist() if radii[0, n, g].min() > 0 and opac[g] >= 1 / 255]
        mu, con, z = means2d[0, n].tolist(), conics[0, n].tolist(), depths[0, n].tolist()
        for i in range(height):
            for j in range(width):
                trans, acc = 1.0, [0.0] * (channels + 1)
                for g in order:
                    du, dv = j + 0.5 - mu[g][0], i + 0.5 - mu[g][1]
                    sigma = 0.5 * (con[g][0] * du * du + con[g][2] * dv * dv) + con[g][1] * du * dv
                    alpha = min(0.999, opac[g] * math.exp(-sigma))
                    if sigma < 0 or alpha < 1 / 255:
                        continue
                    if trans * (1 - alpha) <= 1e-4:
                        stops += 1
                        break
                    feat = s["colors"][0, g].tolist() + [z[g]]
                    acc = [a + alpha * trans * f for a, f in zip(acc, feat)]
                    trans *= 1 - alpha
                out[0, n, :, i, j] = torch.tensor(acc)
                alpha_out[0, n, i, j] = 1 - trans
    return out, alpha_out, stops


def test_render_matches_brute_force_reference():
    s = _scene()
    reference, alpha, stops = _brute_force(s)
    assert stops > 0  # the early-termination rule is exercised
    assert alpha.max() > 0.99 and (alpha == 0).any()
    out = render_gaussians(**s, backend="torch")
    assert out.features.shape == (1, 2, 3, 14, 18) and out.depth.shape == out.alpha.shape == (1, 2, 14, 18)
    torch.testing.assert_close(out.features, reference[:, :, :3], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(out.depth, reference[:, :, 3], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.alpha, alpha, atol=2e-5, rtol=1e-4)


def _composite_2d(means2d, conics, opacities, colors, depths, radii, image_size):
    """Per-pixel reference for rasterize_torch's inputs (one image at a time, gsplat's rule)."""
    images, _, channels = colors.shape
    out = torch.zeros(images, channels + 1, *image_size)
    for n in range(images):
        order = [g for g in torch.argsort(depths[n]).tolist() if radii[n, g].min() > 0]
        for i in range(image_size[0]):
            for j in range(image_size[1]):
                trans, acc = 1.0, torch.zeros(channels + 1)
                for g in order:
                    du, dv = j + 0.5 - means2d[n, g, 0].item(), i + 0.5 - means2d[n, g, 1].item()
                    a, b, c = conics[n, g].tolist()
                    sigma = 0.5 * (a * du * du + c * dv * dv) + b * du * dv
                    alpha = min(0.999, opacities[n, g].item() * math.exp(-sigma))
                    if alpha < 1 / 255:
                        continue
                    if trans * (1 - alpha) <= 1e-4:
                        break
                    acc += alpha * trans * torch.cat([colors[n, g], torch.ones(1)])
                    trans *= 1 - alpha
                out[n, :, i, j] = acc
    return out


def test_tiles_blocks_and_padding_match_per_pixel_compositing():
    gen = torch.Generator().manual_seed(5)
    images, gaussians, size = 2, 30, (10, 23)
    means2d = torch.rand(images, gaussians, 2, generator=gen) * torch.tensor([23.0, 10.0])
    # Gaussian 0 of image 0 (the id padding slots point at): sharp, culled, projected far away
    means2d[0, 0] = torch.tensor([4000.0, -3000.0])
    sig = torch.rand(images, gaussians, 2, generator=gen) * 2 + 0.6
    sig[0, 0] = 0.6
    rho = torch.rand(images, gaussians, generator=gen) * 0.8 - 0.4
    cov_uv = rho * sig[..., 0] * sig[..., 1]
    det = sig[..., 0] ** 2 * sig[..., 1] ** 2 - cov_uv**2
    conics = torch.stack([sig[..., 1] ** 2 / det, -cov_uv / det, sig[..., 0] ** 2 / det], -1)
    radii = torch.ceil(3.33 * sig).int()
    radii[0, 0] = radii[1, 3] = 0  # culled
    opacities = torch.rand(images, gaussians, generator=gen) * 0.7 + 0.3
    colors = torch.randn(images, gaussians, 2, generator=gen)
    depths = torch.rand(images, gaussians, generator=gen) * 10
    args = (means2d, conics, opacities, colors, depths, radii, size)
    reference = _composite_2d(*args)
    for tile_size, block in ((16, 1 << 22), (4, 64), (3, 1)):
        rendered = rasterize_torch(*args, tile_size=tile_size, block_elements=block)
        torch.testing.assert_close(rendered, reference.permute(0, 2, 3, 1), atol=2e-5, rtol=1e-4)  # colors, alpha


def test_gradients_match_finite_differences():
    gen = torch.Generator().manual_seed(4)
    cam2ego, intrinsics, original_to_input = _cameras(1, torch.float64)
    means = (torch.tensor([[[4.0, 0.1, 1.5], [5.0, -0.2, 1.4], [6.0, 0.3, 1.7], [4.5, 0.0, 1.2]]])
             + 0.05 * torch.randn(1, 4, 3, generator=gen)).double()
    quats = torch.randn(1, 4, 4, generator=gen).double()
    scales = (torch.rand(1, 4, 3, generator=gen) * 0.2 + 0.15).double()
    opacities = torch.tensor([[0.7, 0.5, 0.8, 0.4]], dtype=torch.float64)
    colors = torch.randn(1, 4, 2, generator=gen).double()
    leaves = [t.requires_grad_() for t in (means, quats, scales, opacities, colors)]

    def render(m, q, s, o, c):
        out = render_gaussians(m, q, s, o, c, cam2ego, intrinsics, original_to_input, (8, 10), backend="torch")
        return out.features, out.depth, out.alpha

    features, _, alpha = render(*leaves)
    assert features.dtype == torch.float64 and alpha.max() > 0.5
    assert torch.autograd.gradcheck(render, leaves, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_depth_is_accumulated_not_normalised():
    cam2ego, intrinsics, original_to_input = _cameras(1)
    means = torch.tensor([[[6.0, 0.1, 1.5]]])  # optical depth 6 m in view 0
    out = render_gaussians(means, torch.tensor([[[1.0, 0, 0, 0]]]), torch.full((1, 1, 3), 0.3),
                           torch.tensor([[0.5]]), torch.ones(1, 1, 1), cam2ego, intrinsics, original_to_input, (14, 18))
    assert 0.4 < out.alpha.max() <= 0.5
    torch.testing.assert_close(out.depth, 6.0 * out.alpha)
    torch.testing.assert_close(out.features[:, :, 0], out.alpha)


def test_backend_selection_and_input_errors():
    s = _scene(seed=2)
    assert not gsplat_works(torch.device("cpu"))
    auto, ref = render_gaussians(**s), render_gaussians(**s, backend="torch")
    assert torch.equal(auto.features, ref.features)
    with pytest.raises(ValueError, match="CUDA"):
        render_gaussians(**s, backend="gsplat")
    with pytest.raises(ValueError, match="backend"):
        render_gaussians(**s, backend="opengl")
    with pytest.raises(ValueError, match="scales"):
        render_gaussians(**{**s, "scales": s["scales"][..., :2]})
    with pytest.raises(ValueError, match="original_to_input"):
        render_gaussians(**{**s, "original_to_input": s["original_to_input"][:, :1]})
    with pytest.raises(ValueError, match="colors"):
        render_gaussians(**{**s, "colors": s["colors"][0]})


def test_blocks_cover_every_tile_once_within_the_element_bound_and_cut_padding():
    from gausstr_core.render.rasterize_torch import BLOCK_OVERHEAD, _blocks
    from gausstr_core.render.tiles import TileBins

    counts = torch.tensor([40] * 50 + [30] * 200 + [8] * 2000 + [1] * 500)  # like a crowded-centre image
    bins = TileBins(tile_ids=torch.arange(counts.numel()), counts=counts, offsets=torch.cumsum(counts, 0) - counts,
                    gaussian_ids=torch.zeros(int(counts.sum()), dtype=torch.long), tiles_h=50, tiles_w=55)
    pixels, bound = 64, 1 << 20
    blocks = _blocks(bins, pixels, bound)
    assert torch.equal(torch.sort(torch.cat(blocks)).values, torch.arange(counts.numel()))
    padded = [len(b) * pixels * int(counts[b].max()) for b in blocks]
    assert max(padded) <= bound
    assert sum(padded) == int(counts.sum()) * pixels  # these runs are worth their overhead: no padding at all
    assert len(blocks) == 4  # (one block per count; padded to 40 from the start it would be 3.3x the pairs)
    counts = torch.tensor([9] + [8] * 1000)  # a block for the single 9 would save less than it costs
    bins.counts, bins.offsets = counts, torch.cumsum(counts, 0) - counts
    assert pixels * 1000 < BLOCK_OVERHEAD and len(_blocks(bins, pixels, bound)) == 1


def test_nothing_visible_renders_transparent():
    means2d = torch.rand(2, 3, 2) * 8
    conics = torch.tensor([1.0, 0.0, 1.0]).expand(2, 3, 3)
    colors = torch.rand(2, 3, 2, requires_grad=True)
    radii = torch.zeros(2, 3, 2, dtype=torch.int32)  # every Gaussian culled
    out = rasterize_torch(means2d, conics, torch.full((2, 3), 0.5), colors, torch.rand(2, 3), radii, (8, 9))
    assert out.shape == (2, 8, 9, 3) and not out.any()
    out.sum().backward()
    assert not colors.grad.any()
