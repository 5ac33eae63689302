"""`gausstr-viz`: PNG pictures of one sample's prediction next to its Occ3D ground truth.

From a checkpoint (predicts the sample the way gausstr-eval does) or from a gausstr-eval dump:

    gausstr-viz --checkpoint model.pth --data /data/synth --index 0 --out pictures/
    gausstr-viz --dump dumps/<token>.npz --data /data/synth --out pictures/

Writes <token>_bev.png, <token>_voxels_3d.png, <token>_gaussians_bev.png and <token>_cameras.png
(see gausstr_core.viz.figures).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gausstr_core.cli.entry import CliParser, console_script
from gausstr_core.cli.run_config import add_run_config_arguments, run_config
from gausstr_core.config import Config
from gausstr_core.data.nuscenes import NuScenesReader, SampleRecord
from gausstr_core.data.occ3d import load_occ3d, occ3d_path
from gausstr_core.model.checkpoint import checkpoint_config
from gausstr_core.predict import OccupancyPredictor, Prediction, prepare_views
from gausstr_core.prediction_io import load_prediction, load_sample_views
from gausstr_core.viz import save_prediction_figures


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="gausstr-viz", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="predict with this checkpoint")
    source.add_argument("--dump", help="draw a prediction dump written by gausstr-eval --dump-dir")
    add_run_config_arguments(parser)
    parser.add_argument("--sample", help="sample token (default with --dump: the dump's)")
    parser.add_argument("--index", type=int, help="sample index within --split")
    parser.add_argument("--split", help="split for --index (default: data.val_split)")
    parser.add_argument("--depth", choices=("cache", "provider"), default="cache",
                        help="depth maps from the data.depth_kind cache or the depth provider")
    parser.add_argument("--out", required=True, help="output folder for the PNGs")
    return parser


@console_script("gausstr-viz")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    written = run(args)
    for path in written:
        print(path)
    return 0


def run(args: argparse.Namespace) -> list[Path]:
    dumped, meta = load_prediction(args.dump) if args.dump else (None, {})
    base = checkpoint_config(args.checkpoint) if args.checkpoint else (meta.get("config") or Config())
    config = run_config(base, args.config, args.data, args.overrides)
    data = config.data
    reader = NuScenesReader(data.dataroot, data.version, data.cameras)
    token = _pick_token(reader, args, meta.get("token"), args.split or data.val_split)
    source = dumped
    if dumped is None:
        source = OccupancyPredictor.from_checkpoint(args.checkpoint, args.device, config=config)
        print(f"gausstr-viz: vocabulary {source.vocabulary.name!r}, text prototypes: "
              f"{source.prototypes_source}", file=sys.stderr)
    return draw_sample(config, reader.sample_record(token), args.out, source, cached_depth=args.depth == "cache")


def draw_sample(
    config: Config, record: SampleRecord, out: str | Path, source: Prediction | OccupancyPredictor,
    *, cached_depth: bool = True,
) -> list[Path]:
    """The PNGs of one sample of config.data: `source` (a Prediction, e.g. a dump's, or a predictor run on the
    sample's views; cached_depth: their depth from the data.depth_kind cache, else the depth provider) next to
    its Occ3D ground truth (the prediction alone when there is none); returns the paths written."""
    data = config.data
    views = load_sample_views(record, data, depth=cached_depth)
    prediction = source.predict(views) if isinstance(source, OccupancyPredictor) else source
    inputs = prepare_views(views, data.input_size, config.model.patch_size, data.image_size)
    truth_path = occ3d_path(data.occ_root, record.scene, record.token)
    truth = load_occ3d(truth_path, shape=prediction.grid.dims) if truth_path.is_file() else None
    if truth is None:
        print(f"gausstr-viz: no ground truth at {truth_path}; drawing the prediction alone", file=sys.stderr)
    return save_prediction_figures(
        out, prediction, truth=truth, inputs=inputs, camera_names=list(data.cameras),
        input_size=data.input_size, prefix=f"{record.token}_",
    )


def _pick_token(reader: NuScenesReader, args: argparse.Namespace, dumped: str | None, split: str) -> str:
    if args.sample and args.index is not None:
        raise ValueError("give --sample or --index, not both")
    if args.dump and (args.sample or args.index is not None):
        raise ValueError("--dump draws the dump's own sample; drop --sample / --index")
    if args.sample:
        return args.sample
    if args.index is not None:
        tokens = reader.split_samples(split)
        if not -len(tokens) <= args.index < len(tokens):
            raise ValueError(f"--index {args.index} is outside split {split!r} ({len(tokens)} samples)")
        return tokens[args.index]
    if args.dump:
        if not dumped:
            raise ValueError(f"dump {args.dump} records no sample token")
        return dumped
    raise ValueError("say which sample: --sample TOKEN or --index I")


if __name__ == "__main__":
    sys.exit(main())
