"""`gausstr-synth`: write a synthetic nuScenes-format tree (tables, JPEGs, Occ3D gts, caches).

Example: gausstr-synth --out data/synthetic --scenes 2 --samples-per-scene 3
"""

from __future__ import annotations

import argparse
import sys

from gausstr_core.cli.entry import CliParser, console_script
from gausstr_core.data.occ3d import OCC3D_CLASSES
from gausstr_core.data.synthetic.generate import SynthOptions, generate_dataset
from gausstr_core.data.synthetic.occupancy import CAMERA_MASK_RULES


def _size(text: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' -> (width, height)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 160x90 (WIDTHxHEIGHT), got {text!r}") from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return width, height


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="gausstr-synth", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="dataroot to create (must not hold the version folder yet)")
    parser.add_argument("--scenes", type=int, default=2, help="number of scenes (default 2)")
    parser.add_argument("--samples-per-scene", type=int, default=3, help="keyframes per scene, 2 Hz (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--image-size", type=_size, default=(160, 90), help="original images WIDTHxHEIGHT (default 160x90)"
    )
    parser.add_argument("--full-res", action="store_true", help="1600x900 originals (overrides --image-size)")
    parser.add_argument(
        "--input-size",
        type=_size,
        default=None,
        help="cache (network input) size WIDTHxHEIGHT; default: originals scaled to <= 896 wide, "
        "rounded down to whole patches",
    )
    parser.add_argument("--version", default="v1.0-mini", help="nuScenes version folder name (default v1.0-mini)")
    parser.add_argument("--no-sweeps", action="store_true", help="keyframes only (no 12 Hz sweeps)")
    parser.add_argument("--feature-dim", type=int, default=64, help="synthetic feature channels (default 64)")
    parser.add_argument(
        "--patch-size",
        type=int,
        default=None,
        help="synthetic feature patch size (default 10; 14 with --full-res, like DINOv2)",
    )
    parser.add_argument("--jpeg-quality", type=int, default=90)
    parser.add_argument(
        "--camera-mask",
        choices=CAMERA_MASK_RULES,
        default="raycast",
        help="rule of mask_camera: Occ3D's ray casting through the grid (default) or the depth-image tolerance test",
    )
    return parser


@console_script("gausstr-synth")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = SynthOptions(
        scenes=args.scenes,
        samples_per_scene=args.samples_per_scene,
        seed=args.seed,
        image_size=(1600, 900) if args.full_res else args.image_size,
        input_size=None if args.input_size is None else (args.input_size[1], args.input_size[0]),
        version=args.version,
        sweeps=not args.no_sweeps,
        feature_dim=args.feature_dim,
        patch_size=args.patch_size or (14 if args.full_res else 10),
        jpeg_quality=args.jpeg_quality,
        camera_mask=args.camera_mask,
    )
    summary = generate_dataset(args.out, options)
    names = ", ".join(OCC3D_CLASSES[c] for c in summary.classes)
    print(
        f"wrote {summary.samples} samples / {summary.images} images in {len(summary.scenes)} scenes to "
        f"{summary.dataroot} ({summary.version}) in {summary.seconds:.1f} s"
    )
    print(f"{len(summary.classes)} Occ3D classes in camera-visible voxels: {names}")
    print(f"config: {summary.config_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
