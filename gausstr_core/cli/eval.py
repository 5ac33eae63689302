"""`gausstr-eval`: a checkpoint on a data split -> Occ3D metrics (mIoU over 17 and 15 classes, IoU).

Every sample goes through OccupancyPredictor.predict exactly as in the ROS node: the original
JPEGs, original-pixel intrinsics, and the depth maps of the `data.depth_kind` cache (what the bag's
depth topics carry), the depth provider or the model's own depth head (`--depth model`); features
from the feature provider, or the `data.feature_kind` cache with `--features cache`. Labels map to
Occ3D ids through the vocabulary's declared mapping and are scored against
`<occ_root>/<scene>/<token>/labels.npz` inside mask_camera (or mask_lidar).

    gausstr-eval model.pth --data /data/synth --split val --limit 20 --json metrics.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from gausstr_core.cli.entry import CliParser, console_script
from gausstr_core.cli.run_config import add_run_config_arguments, run_config
from gausstr_core.data.nuscenes import NuScenesReader
from gausstr_core.data.occ3d import load_occ3d, occ3d_path
from gausstr_core.metrics import OccupancyMetrics, occupancy_from_density, oracle_ceiling, oracle_fractions
from gausstr_core.model.checkpoint import checkpoint_config
from gausstr_core.predict import STAGES, OccupancyPredictor
from gausstr_core.prediction_io import load_sample_views, save_prediction

MASKS = ("camera", "lidar", "none")
DEPTH_SOURCES = ("cache", "provider", "model")


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
    """Predict every sample of `split` (the first `limit`) and accumulate the Occ3D confusion matrix."""
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


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="gausstr-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="checkpoint written by gausstr-train / save_checkpoint")
    add_run_config_arguments(parser)
    parser.add_argument("--split", default=None, help="split name (default: data.val_split)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N samples")
    parser.add_argument("--mask", choices=MASKS, default="camera", help="voxels scored (default: camera)")
    parser.add_argument("--features", choices=("online", "cache"), default="online",
                        help="feature provider on the images (as the node) or the prepared feature cache")
    parser.add_argument("--depth", choices=DEPTH_SOURCES, default="cache",
                        help="depth maps from the data.depth_kind cache (as the bag), the depth provider, or the "
                        "model's depth head (checkpoints trained with model.depth_head)")
    parser.add_argument("--json", help="write metrics, tokens and mean stage timings to this JSON file")
    parser.add_argument("--dump-dir", help="write one prediction dump <token>.npz per sample here")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    parser.add_argument("--oracle", help="oracle file (benchmarks/oracle_synthetic.py --json) of this synthetic "
                        "world: print the scores as fractions of its ceiling for the model's queries per view")
    return parser


@console_script("gausstr-eval")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    base = checkpoint_config(args.checkpoint)
    config = run_config(base, args.config, args.data, args.overrides)
    predictor = OccupancyPredictor.from_checkpoint(args.checkpoint, args.device, config=config,
                                                   model_depth=args.depth == "model")
    print(f"gausstr-eval: vocabulary {predictor.vocabulary.name!r}, text prototypes: "
          f"{predictor.prototypes_source}", file=sys.stderr)
    result = evaluate(
        predictor, args.split or config.data.val_split, limit=args.limit, mask=args.mask,
        cached_features=args.features == "cache", cached_depth=args.depth == "cache",
        dump_dir=args.dump_dir, progress=not args.no_progress,
    )
    print(result.metrics.table())
    print(f"density IoU (occupied = density > {config.inference.density_threshold:g}, labels ignored): "
          f"{100 * result.density.geometry_iou():.2f}")
    if args.oracle:
        from gausstr_core.data.synthetic.generate import world_camera_mask

        queries = predictor.config.model.num_queries
        ceiling = oracle_ceiling(args.oracle, queries, world_camera_mask(config.data.dataroot))
        print(f"against the oracle ({queries} Gaussians per view, {args.oracle}):")
        print(oracle_fractions(result.scores(), ceiling))
    print("mean ms per sample: " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items()))
    if args.json:
        summary = {"checkpoint": str(args.checkpoint), "split": args.split or config.data.val_split,
                   "mask": args.mask, **result.to_dict()}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
