"""EWA projection of 3D Gaussians into pinhole cameras, with gsplat's conventions.

Mirrors gsplat's `fully_fused_projection` (pinhole): camera-frame means and covariances, the
Jacobian evaluated at the mean clamped to 1.3x the field of view, `eps2d` added to the 2D
covariance, conics = its inverse, and integer per-axis radii (0 = culled: behind `near`, beyond
`far`, off-image, singular, or with opacity below 1/255).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gausstr_core.geometry import covariance_from_scale_rotation, quat_to_rotmat

ALPHA_THRESHOLD = 1.0 / 255.0  # gsplat: alphas below this are skipped
MAX_EXTEND = 3.33  # gsplat: bounding-box half-size in standard deviations
EPS2D = 0.3  # gsplat's default low-pass blur added to every 2D covariance, pixels^2
NEAR_FLOOR = 1e-6  # m: the least depth divided by, whatever near is (project_gaussians)


@dataclass
class ProjectedGaussians:
    """Gaussians projected into I = B x N views (batch-first, per view).

    means2d: (B, N, G, 2) image pixels (u, v); pixel centres at integer + 0.5.
    conics: (B, N, G, 3) upper triangle (a, b, c) of the inverse 2D covariance, pixels^-2.
    depths: (B, N, G) optical z of the means, m.
    radii: (B, N, G, 2) int32 bounding-box half sizes in pixels (u, v); 0 = not rendered.
    """

    means2d: torch.Tensor
    conics: torch.Tensor
    depths: torch.Tensor
    radii: torch.Tensor


def project_gaussians(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    viewmats: torch.Tensor,
    ks: torch.Tensor,
    image_size: tuple[int, int],
    opacities: torch.Tensor | None = None,
    eps2d: float = EPS2D,
    near: float = 0.01,
    far: float = 1e10,
) -> ProjectedGaussians:
    """Project Gaussians into every camera (differentiable in means2d, conics and depths).

    means: (B, G, 3) world frame, m; quats: (B, G, 4) w x y z; scales: (B, G, 3) std devs, m.
    viewmats: (B, N, 4, 4) world -> optical frame; ks: (B, N, 3, 3) pixel intrinsics.
    image_size: (H, W) pixels. opacities: (B, G) or None; when given, radii use gsplat's CUDA
    opacity-aware extent min(3.33, sqrt(2 ln(255 opacity))) and Gaussians below 1/255 are culled
    (gsplat.rasterization); when None, 3.33 sigma (gsplat's pure-PyTorch projection).
    """
    height, width = image_size
    covars = covariance_from_scale_rotation(scales, quat_to_rotmat(quats))  # (B, G, 3, 3)
    rot = viewmats[..., :3, :3]  # (B, N, 3, 3)
    means_c = torch.einsum("bnij,bgj->bngi", rot, means) + viewmats[..., None, :3, 3]
    covars_c = torch.einsum("bnij,bgjk,bnlk->bngil", rot, covars, rot)

    x, y, z_true = means_c.unbind(-1)  # (B, N, G)
    # Divide by a depth held at the near plane or beyond: a Gaussian at or behind it is culled (radii 0, no
    # upstream gradient), but its 1/z or 1/z^2 would overflow at z ~ 0 and 0 x inf makes the gradient NaN.
    z = z_true.clamp(min=max(near, NEAR_FLOOR))
    fx, fy = ks[..., 0, 0, None], ks[..., 1, 1, None]  # (B, N, 1)
    cx, cy = ks[..., 0, 2, None], ks[..., 1, 2, None]
    margin_x, margin_y = 0.3 * 0.5 * width / fx, 0.3 * 0.5 * height / fy  # 30% of the half-FOV tangent
    tx = z * torch.minimum(torch.maximum(x / z, -(cx / fx + margin_x)), (width - cx) / fx + margin_x)
    ty = z * torch.minimum(torch.maximum(y / z, -(cy / fy + margin_y)), (height - cy) / fy + margin_y)
    zero = torch.zeros_like(z)
    jac = torch.stack([fx / z, zero, -fx * tx / z**2, zero, fy / z, -fy * ty / z**2], -1)
    jac = jac.reshape(*z.shape, 2, 3)
    cov2d = jac @ covars_c @ jac.transpose(-1, -2)
    cov2d = cov2d + eps2d * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    det = (cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]).clamp(min=1e-10)
    conics = torch.stack(
        [cov2d[..., 1, 1] / det, -0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]) / det, cov2d[..., 0, 0] / det], -1
    )
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], -1)

    with torch.no_grad():
        extend = torch.full_like(z, MAX_EXTEND)
        visible = (det > 0) & (z_true > near) & (z_true < far)
        if opacities is not None:
            opac = opacities[:, None, :].expand_as(z)
            visible &= opac >= ALPHA_THRESHOLD
            opacity_extend = torch.sqrt(2.0 * torch.log(opac.clamp(min=ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
            extend = torch.minimum(extend, opacity_extend)
        radius = torch.ceil(extend[..., None] * torch.stack([cov2d[..., 0, 0], cov2d[..., 1, 1]], -1).sqrt())
        lo, hi = means2d - radius, means2d + radius
        visible &= (hi[..., 0] > 0) & (lo[..., 0] < width) & (hi[..., 1] > 0) & (lo[..., 1] < height)
        radii = torch.where(visible[..., None], radius, torch.zeros_like(radius)).int()
    return ProjectedGaussians(means2d=means2d, conics=conics, depths=z_true, radii=radii)
