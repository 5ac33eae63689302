"""Occ3D semantic-occupancy metrics: a confusion matrix accumulated over a whole split.

Protocol (docs/model_and_data_facts.md section 2): an 18 x 18 confusion matrix, rows = ground truth, columns =
prediction, over the voxels where the mask (mask_camera, or mask_lidar) is true.
IoU_c = TP / (TP + FP + FN), NaN for a class absent from both. mIoU over 17 classes (the authors'
protocol) = nanmean of every class but free; over 15 classes (LangOcc / GaussianFlowOcc) also
without others (0) and other_flat (12). Geometry IoU: occupied (any class but free) vs free.
Density IoU (occupancy_from_density): the geometry IoU of "density above the threshold", labels
ignored. Values are fractions in [0, 1]; table() prints percentages. Oracle files (written by
benchmarks/oracle_synthetic.py) hold the ceilings a trained model's scores are compared with.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from gausstr_core.data.occ3d import OCC3D_CLASSES as OCC3D_CLASS_NAMES

__all__ = [
    "OCC3D_CLASS_NAMES",
    "ORACLE_SCORES",
    "OccupancyMetrics",
    "occupancy_from_density",
    "oracle_ceiling",
    "oracle_fractions",
]
ORACLE_SCORES = ("iou", "miou17", "miou15", "density_iou")

_NOT_IN_15 = ("others", "other_flat")


def _as_numpy(values: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    if isinstance(values, np.ndarray):
        return values
    raise ValueError(f"{name} must be a numpy array or torch tensor, got {type(values).__name__}")


class OccupancyMetrics:
    """Accumulates a (num_classes, num_classes) int64 confusion matrix; rows = ground truth."""

    def __init__(
        self, num_classes: int = 18, free_label: int = 17, class_names: Sequence[str] = OCC3D_CLASS_NAMES
    ) -> None:
        if len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names for {num_classes} classes")
        if not 0 <= free_label < num_classes:
            raise ValueError(f"free_label {free_label} is not in 0..{num_classes - 1}")
        self.num_classes = num_classes
        self.free_label = free_label
        self.class_names = tuple(class_names)
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)

    def reset(self) -> None:
        self.confusion[:] = 0

    def update(
        self,
        pred: np.ndarray | torch.Tensor,
        gt: np.ndarray | torch.Tensor,
        mask: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        """Add voxels: pred and gt integer labels of one shape (any batch shape), mask bool or None (all)."""
        pred, gt = _as_numpy(pred, "pred"), _as_numpy(gt, "gt")
        if pred.shape != gt.shape:
            raise ValueError(f"pred {pred.shape} and gt {gt.shape} must have the same shape")
        if mask is not None:
            mask = _as_numpy(mask, "mask")
            if mask.shape != gt.shape:
                raise ValueError(f"mask {mask.shape} must have the shape of gt {gt.shape}")
            pred, gt = pred[mask.astype(bool)], gt[mask.astype(bool)]
        for name, values in (("pred", pred), ("gt", gt)):
            if values.dtype.kind not in "iu":
                raise ValueError(f"{name} must hold integer labels, got {values.dtype}")
            if values.size and (values.min() < 0 or values.max() >= self.num_classes):
                raise ValueError(f"{name} labels {values.min()}..{values.max()} outside 0..{self.num_classes - 1}")
        flat = gt.astype(np.int64).ravel() * self.num_classes + pred.astype(np.int64).ravel()
        counts = np.bincount(flat, minlength=self.num_classes**2)
        self.confusion += counts.reshape(self.num_classes, self.num_classes)

    def merge(self, other: OccupancyMetrics) -> OccupancyMetrics:
        """Add another accumulator's counts (e.g. from a worker or rank); returns self."""
        if (other.num_classes, other.free_label, other.class_names) != (
            self.num_classes,
            self.free_label,
            self.class_names,
        ):
            raise ValueError("merge: the two OccupancyMetrics use different classes")
        self.confusion += other.confusion
        return self

    def per_class_iou(self) -> np.ndarray:
        """(num_classes,) IoU per class, NaN where the class is in neither prediction nor ground truth."""
        tp = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def miou(self, num_classes: int | None = None) -> float:
        """Mean IoU (nanmean) over every non-free class (None or K - 1, e.g. 17), or over K - 3
        (e.g. 15: also without others and other_flat)."""
        keep = [c for c in range(self.num_classes) if c != self.free_label]
        if num_classes == len(keep) - len(_NOT_IN_15):
            missing = [n for n in _NOT_IN_15 if n not in self.class_names]
            if missing:
                raise ValueError(f"miou({num_classes}) needs classes {list(_NOT_IN_15)}; missing {missing}")
            keep = [c for c in keep if self.class_names[c] not in _NOT_IN_15]
        elif num_classes not in (None, len(keep)):
            raise ValueError(f"miou over {num_classes} classes is not defined; use {len(keep)} or {len(keep) - 2}")
        values = self.per_class_iou()[keep]
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    def geometry_iou(self) -> float:
        """IoU of "occupied" (every class but free) between prediction and ground truth."""
        occupied = [c for c in range(self.num_classes) if c != self.free_label]
        tp = self.confusion[np.ix_(occupied, occupied)].sum()
        denominator = self.confusion.sum() - self.confusion[self.free_label, self.free_label]
        return float(tp / denominator) if denominator > 0 else float("nan")

    def to_dict(self) -> dict:
        """JSON-ready summary (NaN -> None): per-class IoU by name, mIoU over 17 and 15, geometry IoU."""

        def clean(value: float) -> float | None:
            return None if np.isnan(value) else float(value)

        iou = self.per_class_iou()
        occupied = [c for c in range(self.num_classes) if c != self.free_label]
        result = {
            "per_class_iou": {self.class_names[c]: clean(iou[c]) for c in occupied},
            f"miou_{self.num_classes - 1}": clean(self.miou()),
            "geometry_iou": clean(self.geometry_iou()),
            "num_voxels": int(self.confusion.sum()),
        }
        if all(n in self.class_names for n in _NOT_IN_15):
            result[f"miou_{self.num_classes - 3}"] = clean(self.miou(self.num_classes - 3))
        return result

    def table(self) -> str:
        """Plain-text table of per-class IoU and the summary numbers, in percent."""
        summary = self.to_dict()
        rows = list(summary["per_class_iou"].items())
        rows += [(f"mIoU, {key[5:]} classes", summary[key]) for key in summary if key.startswith("miou")]
        rows.append(("geometry IoU", summary["geometry_iou"]))
        width = max(len(name) for name, _ in rows)
        lines = [f"{'class':<{width}}  IoU %", "-" * (width + 8)]
        lines += [f"{name:<{width}}  {'n/a' if v is None else f'{100 * v:6.2f}':>6}" for name, v in rows]
        lines.append(f"({summary['num_voxels']} voxels)")
        return "\n".join(lines)


def occupancy_from_density(density: torch.Tensor, threshold: float, free_label: int = 17) -> torch.Tensor:
    """(X, Y, Z) voxel density -> uint8 labels: 0 where density > threshold (occupied, class ignored),
    else free_label; scored with geometry_iou() it gives the density IoU."""
    return torch.where(density > threshold, 0, free_label).to(torch.uint8)


def oracle_ceiling(path: str | Path, queries_per_view: int, camera_mask: str) -> dict[str, float]:
    """The oracle's scores ({ORACLE_SCORES name: fraction}) for `queries_per_view` Gaussians per
    view from an oracle file; ValueError when the file was made for another camera-mask rule or
    holds no result for that many queries."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"oracle file not found: {path}")
    try:
        oracle = json.loads(path.read_text())
        results, rule = oracle["results"], oracle["camera_mask"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not an oracle file (benchmarks/oracle_synthetic.py --json): {exc}") from exc
    if rule != camera_mask:
        raise ValueError(f"oracle {path} was scored against the {rule!r} camera mask, the data has {camera_mask!r}")
    if str(queries_per_view) not in results:
        raise ValueError(
            f"oracle {path} has results for {sorted(results)} queries per view, not the model's {queries_per_view}"
        )
    return {k: float(results[str(queries_per_view)][k]) for k in ORACLE_SCORES}


def oracle_fractions(scores: dict[str, float], ceiling: dict[str, float]) -> str:
    """One line per score: the model's value, the oracle's and their ratio (percent, percent, ratio)."""
    lines = []
    for name in ORACLE_SCORES:
        value, top = scores.get(name, math.nan), ceiling[name]
        ratio = value / top if top > 0 else math.nan
        lines.append(f"{name:<12} model {100 * value:6.2f}  oracle {100 * top:6.2f}  fraction {ratio:.3f}")
    return "\n".join(lines)
