"""Quaternions, rotation matrices and covariances vs scipy and explicit formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gausstr_core.geometry import covariance_from_scale_rotation, quat_multiply, quat_to_rotmat, rotmat_to_quat


def _wxyz(rot: Rotation) -> torch.Tensor:
    return torch.tensor(rot.as_quat()[..., [3, 0, 1, 2]], dtype=torch.float64)


def test_quat_to_rotmat_matches_scipy_and_normalises() -> None:
    rots = Rotation.random(64, random_state=0)
    q = _wxyz(rots) * torch.linspace(0.5, 3.0, 64, dtype=torch.float64)[:, None]  # not unit length
    np.testing.assert_allclose(quat_to_rotmat(q).numpy(), rots.as_matrix(), atol=1e-12)
    assert quat_to_rotmat(q.view(4, 16, 4)).shape == (4, 16, 3, 3)


def _hard_rotations() -> Rotation:
    """Identity, 180 degree turns about each axis and near-180 turns: every branch of the matrix -> quaternion solve."""
    axes = np.eye(3)
    diag = np.array([1.0, 1.0, 1.0]) / np.sqrt(3)
    vecs = [np.zeros(3)] + [a * np.pi for a in axes] + [a * (np.pi - 1e-4) for a in axes] + [diag * np.pi]
    return Rotation.from_rotvec(np.array(vecs))


@pytest.mark.parametrize("which", ["random", "hard"])
def test_rotmat_to_quat_inverts_and_matches_scipy_up_to_sign(which: str) -> None:
    rots = Rotation.random(200, random_state=1) if which == "random" else _hard_rotations()
    mats = torch.tensor(rots.as_matrix(), dtype=torch.float64)
    q = rotmat_to_quat(mats)
    np.testing.assert_allclose(q.norm(dim=-1).numpy(), 1.0, atol=1e-12)
    assert torch.all(q[:, 0] >= 0)
    expected = _wxyz(rots)
    expected = torch.where(expected[:, :1] < 0, -expected, expected)
    # q and -q are the same rotation; with w == 0 both signs are valid, compare |q . q_ref| = 1
    np.testing.assert_allclose((q * expected).sum(-1).abs().numpy(), 1.0, atol=1e-7)
    np.testing.assert_allclose(quat_to_rotmat(q).numpy(), rots.as_matrix(), atol=1e-7)


def test_quat_multiply_composes_like_scipy() -> None:
    a, b = Rotation.random(32, random_state=2), Rotation.random(32, random_state=3)
    got = quat_multiply(_wxyz(a), _wxyz(b))
    np.testing.assert_allclose(quat_to_rotmat(got).numpy(), (a * b).as_matrix(), atol=1e-12)
    # Hamilton product against the 4x4 left-multiplication matrix of a, written out
    for qa, qb, qab in zip(_wxyz(a)[:4], _wxyz(b)[:4], got[:4]):
        w, x, y, z = qa.tolist()
        left = np.array([[w, -x, -y, -z], [x, w, -z, y], [y, z, w, -x], [z, -y, x, w]])
        np.testing.assert_allclose(qab.numpy(), left @ qb.numpy(), atol=1e-12)


def test_covariance_matches_explicit_sum_of_axes() -> None:
    rng = np.random.default_rng(4)
    scales = rng.uniform(0.01, 3.0, (5, 7, 3))
    rots = Rotation.random(35, random_state=5).as_matrix().reshape(5, 7, 3, 3)
    cov = covariance_from_scale_rotation(torch.tensor(scales), torch.tensor(rots)).numpy()
    for i in range(5):
        for j in range(7):
            expected = np.zeros((3, 3))
            for axis in range(3):  # sum_a s_a^2 r_a r_a^T
                r = rots[i, j, :, axis]
                expected += scales[i, j, axis] ** 2 * np.outer(r, r)
            np.testing.assert_allclose(cov[i, j], expected, atol=1e-12)
    # eigenvalues are the squared scales
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(cov), -1), np.sort(scales**2, -1), rtol=1e-9)
