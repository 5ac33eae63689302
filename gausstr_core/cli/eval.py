"""`gausstr-eval`: a checkpoint on a data split -> Occ3D metrics (mIoU over 17 and 15 classes, IoU).

A thin command line over gausstr_core.evaluation.evaluate (what is predicted and scored is said
there): `--depth cache` reads the data.depth_kind cache (what the bag's depth topics carry),
`provider` runs the depth provider, `model` the model's own depth head; `--features cache` reads the
data.feature_kind cache instead of running the feature provider.

    gausstr-eval model.pth --data /data/synth --split val --limit 20 --json metrics.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gausstr_core.cli.entry import CliParser, console_script
from gausstr_core.cli.run_config import add_run_config_arguments, run_config
from gausstr_core.evaluation import MASKS, evaluate
from gausstr_core.metrics import oracle_ceiling, oracle_fractions
from gausstr_core.model.checkpoint import checkpoint_config
from gausstr_core.predict import OccupancyPredictor

DEPTH_SOURCES = ("cache", "provider", "model")


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
                                                   model_depth=args.depth == "model", profile=True)
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
