"""Occ3D evaluation: a predictor on a data split -> confusion matrices (label IoU, mIoU over 17 and 15
classes, density IoU) and mean stage timings.

Every sample goes through OccupancyPredictor.predict exactly as in the ROS node: the original
JPEGs, original-pixel intrinsics, and the depth maps of the `data.depth_kind` cache (what the bag's
depth topics carry) or, without it, the depth provider or the model's own depth head; features from
the feature provider, or the `data.feature_kind` cache. Labels map to Occ3D ids through the
vocabulary's declared mapping and are scored against `<occ_root>/<scene>/<token>/labels.npz` inside
mask_camera (or mask_lidar). The command line is `gausstr-eval` (gausstr_core.cli.eval).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from gausstr_core.data.nuscenes import NuScenesReader
from gausstr_core.data.occ3d import load_occ3d, occ3d_path
from gausstr_core.metrics import OccupancyMetrics, occupancy_from_density
from gausstr_core.predict import STAGES, OccupancyPredictor
from gausstr_core.prediction_io import load_sample_views, save_prediction

MASKS = ("camera", "lidar", "none")


@dataclass
class EvalResult:
    metrics: OccupancyMetrics
    tokens: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # mean ms per stage
    density: OccupancyMetrics = field(default_factory=OccupancyMetrics)  # density > threshold vs occupied

    def scores(self) -> dict[str, float]:
        """Label IoU, mIoU over 17 and 15 classes, density IoU (fractions)."""
        return {"iou": self.metrics.geometry_iou(), "miou17": self.metrics.miou(17), "miou15": self.metrics.miou(15),
                "density_iou": self.density.geometry_iou()}

    def to_dict(self) -> dict:
        return {"samples": len(self.tokens), "tokens": self.tokens, "metrics": self.metrics.to_dict(),
                "density_iou": self.density.geometry_iou(), "timings_ms": self.timings}


def evaluate(
    predictor: OccupancyPredictor,
    split: str,
    *,
    limit: int | None = None,
    mask: str = "camera",
    cached_features: bool = False,
    cached_depth: bool = True,
    dump_dir: str | Path | None = None,
    progress: bool = True,
) -> EvalResult:
    """Predict every sample of `split` (the first `limit`) and accumulate the Occ3D confusion matrix.

    mask: voxels scored (MASKS); cached_features / cached_depth: read the data.feature_kind /
    data.depth_kind caches instead of running the providers (or the depth head); dump_dir: write one
    prediction dump <token>.npz per sample there; progress: tqdm bar.
    """
    if mask not in MASKS:
        raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
    unmapped = [c.name for c in predictor.vocabulary.classes if c.occ3d_id is None]
    if unmapped:
        raise ValueError(f"vocabulary {predictor.vocabulary.name!r} cannot be scored on Occ3D: classes {unmapped} "
                         "declare no occ3d_id")
    data = predictor.config.data
    reader = NuScenesReader(data.dataroot, data.version, data.cameras)
    tokens = reader.split_samples(split)[:limit]
    if not tokens:
        raise ValueError(f"split {split!r} of {data.dataroot}/{data.version} holds no samples")
    result = EvalResult(OccupancyMetrics(), timings=dict.fromkeys(STAGES, 0.0))
    predictor.warm_up()  # one-off kernel loading stays out of the per-sample times
    for token in tqdm(tokens, desc=f"gausstr-eval {split}", unit="sample", disable=not progress):
        record = reader.sample_record(token)
        views = load_sample_views(record, data, depth=cached_depth, features=cached_features)
        prediction = predictor.predict(views)
        truth = load_occ3d(occ3d_path(data.occ_root, record.scene, token), shape=predictor.grid.dims)
        visible = {"camera": truth.mask_camera, "lidar": truth.mask_lidar, "none": None}[mask]
        result.metrics.update(prediction.labels_occ3d().cpu(), truth.semantics, visible)
        occupied = occupancy_from_density(prediction.density.cpu(), predictor.config.inference.density_threshold)
        result.density.update(occupied, truth.semantics, visible)
        for stage, ms in prediction.timings.items():
            result.timings[stage] += ms / len(tokens)
        if dump_dir is not None:
            save_prediction(Path(dump_dir) / f"{token}.npz", prediction, token=token, config=predictor.config)
        result.tokens.append(token)
    return result
