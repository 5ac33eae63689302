"""Density IoU and oracle files (metrics.occupancy_from_density, oracle_ceiling, oracle_fractions)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gausstr_core.metrics import OccupancyMetrics, occupancy_from_density, oracle_ceiling, oracle_fractions


def test_density_iou_ignores_labels() -> None:
    density = torch.tensor([0.0, 0.05, 0.5, 0.01])
    truth = np.array([17, 4, 11, 4], dtype=np.uint8)  # free, car, road, car
    occupied = occupancy_from_density(density, 0.04)
    assert occupied.tolist() == [17, 0, 0, 17]
    metrics = OccupancyMetrics()
    metrics.update(occupied, truth)
    assert metrics.geometry_iou() == pytest.approx(2 / 3)  # 2 of the 3 occupied voxels found, no false one


def _oracle(path, rule="raycast") -> None:
    scores = {"iou": 0.5, "miou17": 0.25, "miou15": 0.3, "density_iou": 0.5}
    path.write_text(json.dumps({"camera_mask": rule, "results": {"128": {"queries_per_view": 128, **scores}}}))


def test_oracle_ceiling_and_fractions(tmp_path) -> None:
    path = tmp_path / "oracle.json"
    _oracle(path)
    ceiling = oracle_ceiling(path, 128, "raycast")
    assert ceiling == {"iou": 0.5, "miou17": 0.25, "miou15": 0.3, "density_iou": 0.5}
    text = oracle_fractions({"iou": 0.25, "miou17": 0.05, "miou15": 0.15, "density_iou": 0.4}, ceiling)
    assert "iou          model  25.00  oracle  50.00  fraction 0.500" in text
    assert "miou15       model  15.00  oracle  30.00  fraction 0.500" in text
    assert "density_iou  model  40.00  oracle  50.00  fraction 0.800" in text


def test_oracle_mismatches_are_named(tmp_path) -> None:
    path = tmp_path / "oracle.json"
    _oracle(path, "depth_tolerance")
    with pytest.raises(ValueError, match="'depth_tolerance' camera mask"):
        oracle_ceiling(path, 128, "raycast")
    with pytest.raises(ValueError, match=r"\['128'\] queries per view, not the model's 300"):
        oracle_ceiling(path, 300, "depth_tolerance")
    path.write_text("{}")
    with pytest.raises(ValueError, match="not an oracle file"):
        oracle_ceiling(path, 128, "raycast")
    with pytest.raises(FileNotFoundError):
        oracle_ceiling(tmp_path / "missing.json", 128, "raycast")
