"""OccupancyMetrics against an independent per-sample set computation of IoU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gausstr_core.metrics import OCC3D_CLASS_NAMES, OccupancyMetrics

SHAPE = (20, 20, 4)


def random_samples(count: int, seed: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(pred, gt, mask) triples; the prediction never uses classes 0 and 12, like GaussTR's."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        gt = rng.integers(0, 18, SHAPE).astype(np.uint8)
        gt[rng.random(SHAPE) < 0.6] = 17  # mostly free, as in Occ3D
        pred = np.where(rng.random(SHAPE) < 0.5, gt, rng.integers(0, 18, SHAPE)).astype(np.uint8)
        pred[np.isin(pred, (0, 12))] = 17
        samples.append((pred, gt, rng.random(SHAPE) < 0.7))
    return samples


def expected_numbers(samples) -> dict:
    """IoU from explicit set counts summed over samples (no confusion matrix)."""
    inter, union = np.zeros(18), np.zeros(18)
    geo_inter = geo_union = 0
    for pred, gt, mask in samples:
        p, g = pred[mask], gt[mask]
        for c in range(18):
            inter[c] += np.sum((p == c) & (g == c))
            union[c] += np.sum((p == c) | (g == c))
        geo_inter += np.sum((p != 17) & (g != 17))
        geo_union += np.sum((p != 17) | (g != 17))
    iou = [inter[c] / union[c] if union[c] else float("nan") for c in range(18)]
    return {
        "iou": np.array(iou),
        "miou17": np.nanmean(iou[:17]),
        "miou15": np.nanmean([iou[c] for c in range(17) if c not in (0, 12)]),
        "geometry": geo_inter / geo_union,
    }


def test_confusion_matrix_matches_histogram2d() -> None:
    samples = random_samples(4, seed=0)
    metrics = OccupancyMetrics()
    expected = np.zeros((18, 18))
    for pred, gt, mask in samples:
        metrics.update(pred, gt, mask)
        hist, _, _ = np.histogram2d(gt[mask], pred[mask], bins=18, range=[[0, 18], [0, 18]])
        expected += hist
    np.testing.assert_array_equal(metrics.confusion, expected)


def test_metrics_equal_independent_set_counts_over_several_samples() -> None:
    samples = random_samples(5, seed=1)
    metrics = OccupancyMetrics()
    for pred, gt, mask in samples:
        metrics.update(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(mask))  # torch works too
    expected = expected_numbers(samples)
    np.testing.assert_allclose(metrics.per_class_iou(), expected["iou"], rtol=1e-12)
    assert metrics.per_class_iou()[0] == 0.0  # in the ground truth, never predicted: 0, not NaN
    assert metrics.miou(17) == pytest.approx(expected["miou17"], rel=1e-12)
    assert metrics.miou() == metrics.miou(17)
    assert metrics.miou(15) == pytest.approx(expected["miou15"], rel=1e-12)
    assert metrics.miou(15) > metrics.miou(17)  # others / other_flat are never predicted
    assert metrics.geometry_iou() == pytest.approx(expected["geometry"], rel=1e-12)


def test_batched_update_and_merge_equal_one_accumulator() -> None:
    samples = random_samples(4, seed=2)
    batched = OccupancyMetrics()
    batched.update(*(np.stack(parts) for parts in zip(*samples[:2])))  # (2, X, Y, Z) batch
    other = OccupancyMetrics()
    for sample in samples[2:]:
        other.update(*sample)
    single = OccupancyMetrics()
    for sample in samples:
        single.update(*sample)
    assert batched.merge(other) is batched
    np.testing.assert_array_equal(batched.confusion, single.confusion)


def test_absent_class_is_nan_and_ignored_by_miou() -> None:
    metrics = OccupancyMetrics()
    gt = np.array([4, 4, 11, 17])
    pred = np.array([4, 17, 11, 17])
    metrics.update(pred, gt)
    iou = metrics.per_class_iou()
    assert iou[4] == pytest.approx(0.5) and iou[11] == 1.0 and np.isnan(iou[1])
    assert metrics.miou() == pytest.approx(0.75)
    assert metrics.geometry_iou() == pytest.approx(2 / 3)


def test_mask_excludes_voxels() -> None:
    metrics = OccupancyMetrics()
    metrics.update(np.array([4, 5]), np.array([4, 4]), mask=np.array([True, False]))
    assert metrics.confusion.sum() == 1 and metrics.confusion[4, 4] == 1


def test_table_and_dict_report_every_class() -> None:
    metrics = OccupancyMetrics()
    for sample in random_samples(2, seed=3):
        metrics.update(*sample)
    summary = metrics.to_dict()
    json.dumps(summary)  # JSON-ready: NaN became None
    assert list(summary["per_class_iou"]) == list(OCC3D_CLASS_NAMES[:17])
    assert summary["miou_17"] == pytest.approx(metrics.miou(17))
    assert summary["miou_15"] == pytest.approx(metrics.miou(15))
    table = metrics.table()
    for name in OCC3D_CLASS_NAMES[:17]:
        assert name in table
    assert f"{100 * metrics.miou(15):6.2f}" in table and f"{100 * metrics.geometry_iou():6.2f}" in table


def test_custom_vocabulary_without_occ3d_names() -> None:
    metrics = OccupancyMetrics(num_classes=3, free_label=2, class_names=("car", "road", "empty"))
    metrics.update(np.array([0, 1, 2]), np.array([0, 1, 1]))
    assert metrics.miou() == pytest.approx(0.75)
    assert set(metrics.to_dict()) == {"per_class_iou", "miou_2", "geometry_iou", "num_voxels"}
    with pytest.raises(ValueError, match="not defined"):
        metrics.miou(15)


def test_bad_input_raises() -> None:
    metrics = OccupancyMetrics()
    with pytest.raises(ValueError, match="same shape"):
        metrics.update(np.zeros(3, dtype=int), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="outside 0..17"):
        metrics.update(np.array([18]), np.array([0]))
    with pytest.raises(ValueError, match="integer labels"):
        metrics.update(np.array([1.0]), np.array([0]))
    with pytest.raises(ValueError, match="different classes"):
        metrics.merge(OccupancyMetrics(num_classes=3, free_label=2, class_names=("a", "b", "c")))
