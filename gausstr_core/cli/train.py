"""`gausstr-train`: self-supervised GaussTR training (single process or under torchrun)."""

from __future__ import annotations

import argparse
import sys

from gausstr_core.cli.entry import CliParser, console_script
from gausstr_core.cli.run_config import run_config
from gausstr_core.config import Config, apply_overrides, config_from_dict, load_config


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(
        prog="gausstr-train",
        description="Train GaussTR against foundation-model features and depth. Multi-GPU: "
        "torchrun --nproc-per-node G $(which gausstr-train) CONFIG ...",
    )
    parser.add_argument("config", help="config YAML (e.g. config/tiny.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=1e-4 data.dataroot=/data")
    parser.add_argument("--data", help="dataset root (nuScenes layout: <version>/, samples/, gts/, cache/), e.g. "
                        "a gausstr-synth folder; sets data.dataroot, occ_root, cache_root and version")
    parser.add_argument("--work-dir", help="output folder (overrides train.work_dir)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="continue from a checkpoint; without a path: the work dir's latest.pt")
    parser.add_argument("--max-steps", type=int, help="stop after this many total steps (checkpoint written)")
    parser.add_argument("--max-seconds", type=float, help="stop after this many seconds of this run")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """The run's Config: the YAML, then --data, then the dotted overrides, then --work-dir."""
    overrides = list(args.overrides) + ([f"train.work_dir={args.work_dir}"] if args.work_dir else [])
    config = run_config(load_config(args.config), None, args.data, [])
    return config_from_dict(apply_overrides(config.to_dict(), overrides))


@console_script("gausstr-train")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    config = config_from_args(args)
    from gausstr_core.train.loop import train

    result = train(config, device=args.device, resume=args.resume, max_steps=args.max_steps,
                   max_seconds=args.max_seconds, show_progress=not args.no_progress)
    print(f"gausstr-train: {result.steps} steps, {result.epochs_done} epochs done; "
          f"checkpoint: {result.last_checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
