"""The oracle benchmark's pieces: query allocation, clustering, and Gaussians inside the head's range."""

from __future__ import annotations

import pytest
import torch

from benchmarks.oracle_synthetic import OracleHead, OracleKnobs, allocate, kmeans
from gausstr_core.config import ModelConfig
from gausstr_core.data.occ3d import FREE_ID
from gausstr_core.grid import VoxelGrid


def test_allocate_shares_queries_by_count_with_one_per_class() -> None:
    labels = torch.tensor([4] * 90 + [11] * 9 + [1])
    shares = allocate(labels, 10, power=1.0)
    assert sum(shares.values()) == 10 and shares[1] == 1 and shares[4] > shares[11] >= 1
    assert allocate(labels[-3:], 10, power=1.0) == {11: 2, 1: 1}  # never more than a class's voxels
    assert allocate(torch.tensor([], dtype=torch.long), 5, 1.0) == {}


def test_kmeans_separates_clusters() -> None:
    points = torch.cat([torch.randn(50, 3, generator=torch.Generator().manual_seed(0)) * 0.1 + c
                        for c in (0.0, 5.0, 10.0)])
    assign = kmeans(points, 3, iters=5)
    assert all(len(set(assign[i * 50:(i + 1) * 50].tolist())) == 1 for i in range(3))
    assert len(set(assign.tolist())) == 3


def test_view_gaussians_stay_in_the_heads_scale_range() -> None:
    cfg = ModelConfig(num_queries=4, scale_multiplier=1.0, scale_range=(1.0, 4.0))
    grid = VoxelGrid(range=(0.0, -4.0, -2.0, 16.0, 4.0, 2.0), size=0.5)
    head = OracleHead(cfg, grid, OracleKnobs())
    head.class_features = torch.eye(18, 8)
    cam2ego = torch.eye(4)
    cam2ego[:3, :3] = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # looking along +x
    k = torch.tensor([[50.0, 0.0, 50.0], [0.0, 50.0, 25.0], [0.0, 0.0, 1.0]])
    depth = torch.full((50, 100), 10.0)
    centres = grid.centers().reshape(-1, 3)
    wall = ((centres[:, 0] - 10.25).abs() < 0.1) & (centres[:, 1].abs() < 3)  # a wall 10 m ahead
    ids = wall.nonzero()[:, 0]
    gaussians = head._view_gaussians(ids, torch.full((len(ids),), 15), depth, k, cam2ego, torch.eye(3))
    assert gaussians.means.shape == (4, 3) and torch.allclose(gaussians.means[:, 0], torch.tensor(10.25))
    unit = 10.0 * cfg.scale_multiplier / k[0, 0]
    assert bool((gaussians.scales >= unit - 1e-6).all() and (gaussians.scales <= 4 * unit + 1e-6).all())
    assert float(gaussians.scales[:, 2].max()) == pytest.approx(float(unit))  # thin along the optical axis: floor
    assert torch.equal(gaussians.features, head.class_features[torch.full((4,), 15)])
    none = head._view_gaussians(ids[:0], ids[:0], depth, k, cam2ego, torch.eye(3))
    assert bool((none.opacities == 0).all()) and torch.equal(none.features, head.class_features[[FREE_ID] * 4])
