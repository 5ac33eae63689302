"""Batched 3D geometry: quaternions, covariances, camera projection, augmentation matrices.

Conventions: quaternions are w x y z; ego frame x forward, y left, z up; camera frames optical
(z forward, x right, y down); `intrinsics` map the optical frame to original pixels and
`original_to_input` maps original pixels to network-input pixels. Pixel (u, v) = (column, row), with pixel
centres at integer + 0.5 in the continuous image plane.
"""

from __future__ import annotations

import torch


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """(..., 4) w x y z (normalised here) -> (..., 3, 3) rotation matrices."""
    w, x, y, z = torch.unbind(quats / quats.norm(dim=-1, keepdim=True), dim=-1)
    rows = [
        1 - 2 * (y * y + z * z),
        2 * (x * y - w * z),
        2 * (x * z + w * y),
        2 * (x * y + w * z),
        1 - 2 * (x * x + z * z),
        2 * (y * z - w * x),
        2 * (x * z - w * y),
        2 * (y * z + w * x),
        1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*quats.shape[:-1], 3, 3)


def rotmat_to_quat(rotmats: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 4) w x y z unit quaternions with w >= 0."""
    m = rotmats
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # Four candidate solutions; pick the numerically largest denominator per element.
    cands = torch.stack(
        [
            torch.stack(
                [1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1
            ),
            torch.stack(
                [
                    m[..., 2, 1] - m[..., 1, 2],
                    1 + 2 * m[..., 0, 0] - trace,
                    m[..., 0, 1] + m[..., 1, 0],
                    m[..., 0, 2] + m[..., 2, 0],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 0, 1] + m[..., 1, 0],
                    1 + 2 * m[..., 1, 1] - trace,
                    m[..., 1, 2] + m[..., 2, 1],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 1, 0] - m[..., 0, 1],
                    m[..., 0, 2] + m[..., 2, 0],
                    m[..., 1, 2] + m[..., 2, 1],
                    1 + 2 * m[..., 2, 2] - trace,
                ],
                -1,
            ),
        ],
        dim=-2,
    )  # (..., 4 candidates, 4)
    diag = torch.stack(
        [1 + trace, 1 + 2 * m[..., 0, 0] - trace, 1 + 2 * m[..., 1, 1] - trace, 1 + 2 * m[..., 2, 2] - trace], -1
    )
    best = diag.argmax(dim=-1, keepdim=True)
    q = torch.take_along_dim(cands, best[..., None].expand(*best.shape, 4), dim=-2).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b of (..., 4) w x y z quaternions."""
    aw, ax, ay, az = torch.unbind(a, -1)
    bw, bx, by, bz = torch.unbind(b, -1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


def covariance_from_scale_rotation(scales: torch.Tensor, rotmats: torch.Tensor) -> torch.Tensor:
    """Sigma = R S S^T R^T; scales (..., 3) standard deviations, rotmats (..., 3, 3) -> (..., 3, 3)."""
    rs = rotmats * scales[..., None, :]
    return rs @ rs.transpose(-1, -2)


def make_transform(rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation and (..., 3) translation -> (..., 4, 4) homogeneous transform."""
    out = torch.zeros(*rotation.shape[:-2], 4, 4, dtype=rotation.dtype, device=rotation.device)
    out[..., :3, :3] = rotation
    out[..., :3, 3] = translation
    out[..., 3, 3] = 1
    return out


def transform_points(a_to_b: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply (..., 4, 4) a_to_b to (..., N, 3) points in frame a -> (..., N, 3) in frame b."""
    return points @ a_to_b[..., :3, :3].transpose(-1, -2) + a_to_b[..., None, :3, 3]


def pixel_to_input_matrix(intrinsics: torch.Tensor, original_to_input: torch.Tensor) -> torch.Tensor:
    """Effective intrinsics of the network input: original_to_input @ K, (..., 3, 3)."""
    return original_to_input @ intrinsics


def project_points(
    points_ego: torch.Tensor, cam2ego: torch.Tensor, intrinsics: torch.Tensor, original_to_input: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Project ego points into network-input pixels.

    points_ego: (..., N, 3) ego frame, m; cam2ego (..., 4, 4); intrinsics, original_to_input (..., 3, 3).
    Returns uv (..., N, 2) network-input pixels and depth (..., N) optical z, m (points behind the
    camera get depth <= 0; their uv is meaningless).
    """
    cam = transform_points(torch.linalg.inv(cam2ego), points_ego)
    depth = cam[..., 2]
    pix = cam @ pixel_to_input_matrix(intrinsics, original_to_input).transpose(-1, -2)
    uv = pix[..., :2] / _safe(pix[..., 2:3])
    return uv, depth


def _safe(z: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return torch.where(z.abs() < eps, torch.full_like(z, eps), z)


def unproject_pixels(
    uv: torch.Tensor, depth: torch.Tensor, cam2ego: torch.Tensor, intrinsics: torch.Tensor,
    original_to_input: torch.Tensor,
) -> torch.Tensor:
    """Back-project network-input pixels with optical depth into the ego frame.

    uv: (..., N, 2) network-input pixels; depth: (..., N) optical z, m; cam2ego (..., 4, 4);
    intrinsics, original_to_input (..., 3, 3). Returns (..., N, 3) ego frame, m.
    """
    k_inv = torch.linalg.inv(pixel_to_input_matrix(intrinsics, original_to_input))
    homog = torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1)
    rays = homog @ k_inv.transpose(-1, -2)  # optical frame, z = 1
    return transform_points(cam2ego, rays * depth[..., None])


def resize_crop_matrix(scale: float | tuple[float, float], crop: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """original_to_input for 'resize by scale (sx, sy), then crop away the top-left (cx, cy) pixels': (3, 3).

    Maps original pixels to network-input pixels: u' = sx * u - cx, v' = sy * v - cy.
    """
    sx, sy = (scale, scale) if isinstance(scale, (int, float)) else scale
    return torch.tensor([[sx, 0.0, -crop[0]], [0.0, sy, -crop[1]], [0.0, 0.0, 1.0]], dtype=torch.float32)
