"""`gausstr-query`: ask one sample's prediction where things are, in free text.

    gausstr-query model.pth --data /data/synth [--sample TOKEN] car "fire hydrant" [--out DIR]

Predicts the sample the way gausstr-eval does (default: the first keyframe of data.val_split),
then answers every prompt with OccupancyPredictor.query (docs/queries.md): writes
<token>_query<i>_<prompt>.png per prompt (gausstr_core.viz.query: bird's-eye heat map and 3D view
next to the camera images) and <token>_query.json with every prompt's clusters (ego frame, m),
and prints the JSON's path and each prompt's top cluster.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from gausstr_core.atomic_files import write_atomic
from gausstr_core.cli.entry import CliParser, console_script
from gausstr_core.cli.run_config import run_config
from gausstr_core.data.nuscenes import NuScenesReader
from gausstr_core.model.checkpoint import checkpoint_config
from gausstr_core.predict import OccupancyPredictor
from gausstr_core.prediction_io import load_sample_views
from gausstr_core.query import DEFAULT_MAX_CLUSTERS, DEFAULT_THRESHOLD, QueryAnswer, check_query_arguments
from gausstr_core.viz.query import draw_query_figure

DPI = 90


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="gausstr-query", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="gausstr checkpoint (.pth)")
    parser.add_argument("prompts", nargs="+", metavar="PROMPT", help="free-text prompts, e.g. car 'fire hydrant'")
    parser.add_argument("--config", help="YAML whose data / grid / inference keys replace the checkpoint's")
    parser.add_argument("--data", help="dataset root (nuScenes layout: <version>/, samples/, gts/, cache/)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--sample", help="sample token (default: the first keyframe of data.val_split)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help=f"voxel relevance threshold in (0, 1) (default {DEFAULT_THRESHOLD})")
    parser.add_argument("--max-clusters", type=int, default=DEFAULT_MAX_CLUSTERS, help="clusters per prompt")
    parser.add_argument("--depth", choices=("cache", "provider"), default="cache",
                        help="depth maps from the data.depth_kind cache or the depth provider")
    parser.add_argument("--out", default=".", help="output folder for the PNGs and the JSON (default: .)")
    return parser


@console_script("gausstr-query")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    check_query_arguments(args.prompts, args.threshold, args.max_clusters)  # before loading anything
    config = run_config(checkpoint_config(args.checkpoint), args.config, args.data, [])
    data = config.data
    reader = NuScenesReader(data.dataroot, data.version, data.cameras)
    token = args.sample or _first_keyframe(reader, data.val_split)
    record = reader.sample_record(token)
    views = load_sample_views(record, data, depth=args.depth == "cache")
    predictor = OccupancyPredictor.from_checkpoint(args.checkpoint, args.device, config=config)
    prediction = predictor.predict(views)
    answers = predictor.query(prediction, args.prompts, args.threshold, args.max_clusters)
    out = Path(args.out)
    images = predictor.prepare(views).images
    images = None if images is None else images.permute(0, 2, 3, 1).cpu().numpy()
    for index, answer in enumerate(answers):
        fig = Figure(figsize=(15, 10))
        draw_query_figure(fig, answer, prediction.grid, images, list(data.cameras))
        path = out / f"{token}_query{index}_{_slug(answer.prompt)}.png"
        write_atomic(path, lambda handle, fig=fig: fig.savefig(handle, format="png", dpi=DPI), durable=False)
        print(path)
    path = out / f"{token}_query.json"
    document = answers_document(token, answers)
    write_atomic(path, lambda handle: handle.write(json.dumps(document, indent=2).encode()), durable=False)
    print(path)
    for answer in answers:
        top = answer.clusters[0] if answer.clusters else None
        where = (f"top cluster at ({', '.join(f'{v:.1f}' for v in top.centroid)}) m, {top.voxel_count} voxels"
                 if top else "nothing above the threshold")
        print(f"{answer.prompt!r}: {where} (max relevance {answer.max_relevance:.2f})")
    return 0


def answers_document(token: str, answers: list[QueryAnswer]) -> dict[str, Any]:
    """The JSON written next to the pictures."""
    return {
        "sample": token,
        "frame": "ego (x forward, y left, z up), m",
        "prompts": [
            {"prompt": a.prompt, "threshold": a.threshold, "max_relevance": a.max_relevance,
             "background": a.background,
             "clusters": [{"centroid": list(c.centroid), "extent": list(c.extent), "score": c.score,
                           "max_relevance": c.max_relevance, "voxel_count": c.voxel_count} for c in a.clusters]}
            for a in answers
        ],
    }


def _first_keyframe(reader: NuScenesReader, split: str) -> str:
    tokens = reader.split_samples(split)
    if not tokens:
        raise ValueError(f"split {split!r} has no samples; give --sample TOKEN")
    return tokens[0]


def _slug(prompt: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", prompt.strip()).strip("_").lower() or "prompt"


if __name__ == "__main__":
    sys.exit(main())
