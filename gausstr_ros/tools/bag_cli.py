"""`gausstr-bag`: convert a nuScenes tree (real or synthetic) into a ROS 2 bag.

Example:
    gausstr-bag bags/val0 --dataroot data/synth --version v1.0-synth --scene scene-0007 \\
        --sweeps --depth cache --depth-kind synthetic_depth
"""

from __future__ import annotations

import argparse
import sys

from gausstr_core.cli.entry import CliParser, console_script
from gausstr_core.config import load_config
from gausstr_core.data.nuscenes import NuScenesReader, find_version
from gausstr_core.errors import UserError
from gausstr_ros.tools.bag_writer import (
    STORAGES,
    cache_depth_source,
    camera_frames,
    provider_depth_source,
    write_bag,
)


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="gausstr-bag", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="bag folder to create")
    p.add_argument("--config", help="GaussTR config YAML (data.* gives the defaults below)")
    p.add_argument("--dataroot", help="nuScenes root (default: data.dataroot)")
    p.add_argument("--version", help="nuScenes version folder, e.g. v1.0-mini (default: data.version, or the "
                   "only v1.0-* folder of the dataroot when that one is missing)")
    p.add_argument("--cameras", nargs="+", help="camera channels (default: data.cameras)")
    p.add_argument("--scene", action="append", default=[], help="scene name (repeatable)")
    p.add_argument("--split", help="all scenes of this split (default without --scene: every scene)")
    p.add_argument("--sweeps", action="store_true", help="every 12 Hz image, not only the 2 Hz keyframes")
    p.add_argument("--limit", type=int, help="at most this many images per camera and scene")
    p.add_argument("--storage", choices=sorted(STORAGES), default="mcap")
    p.add_argument("--depth", choices=["none", "cache", "provider"], default="none",
                   help="add /<CAM>/depth 32FC1 topics from a prepared depth cache or a depth provider")
    p.add_argument("--depth-kind", help="depth cache kind (default: data.depth_kind), e.g. synthetic_depth")
    p.add_argument("--cache-root", help="prepared cache root (default: data.cache_root)")
    p.add_argument("--force", action="store_true", help="replace an existing bag folder (once the new one is complete)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


@console_script("gausstr-bag")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    data = load_config(args.config).data
    cameras = tuple(args.cameras or data.cameras)
    dataroot = args.dataroot or data.dataroot
    reader = NuScenesReader(dataroot, args.version or find_version(dataroot, data.version), cameras)
    scenes = args.scene or (reader.split_scenes(args.split) if args.split else reader.scene_names)
    unknown = sorted(set(scenes) - set(reader.scene_names))
    if unknown:
        raise UserError(f"unknown scene(s) {unknown}; the tree has {reader.scene_names}")
    if not scenes:
        raise UserError(f"split {args.split!r} has no scenes in this tree")
    depth = None
    if args.depth == "cache":
        depth = cache_depth_source(args.cache_root or data.cache_root, args.depth_kind or data.depth_kind)
    elif args.depth == "provider":
        from gausstr_core.foundation.registry import build_depth_provider

        if not data.depth_provider:
            raise UserError("--depth provider needs data.depth_provider in the --config file")
        depth = provider_depth_source(build_depth_provider(data.depth_provider), tuple(data.input_size))
    frames = camera_frames(reader, scenes, keyframes_only=not args.sweeps, limit=args.limit)
    summary = write_bag(args.out, frames, storage=args.storage, depth=depth, overwrite=args.force,
                        progress=not args.quiet)
    seconds = (summary.end_ns - summary.start_ns) * 1e-9
    print(f"wrote {summary.path} ({args.storage}, {len(scenes)} scene(s), {seconds:.1f} s of data)")
    for topic, count in sorted(summary.message_counts.items()):
        print(f"  {topic}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
