"""gausstr-convert: the authors' released GaussTR `.pth` (mmengine layout) -> our checkpoint.

The source is read with an allow-list unpickler (no mmengine import, no foreign code runs) and
mapped strictly onto the model described by --config. Example:

    gausstr-convert gausstr_talk2dino_e20_miou12.27.pth gausstr_talk2dino.pt --config config/gausstr_talk2dino.yaml
"""

from __future__ import annotations

import argparse
import sys

from gausstr_core.cli.entry import CliParser, console_script
from gausstr_core.config import load_config
from gausstr_core.model.authors_weights import convert_authors_checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="gausstr-convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="authors' checkpoint (.pth)")
    parser.add_argument("dst", help="output checkpoint (our format)")
    parser.add_argument("--config", required=True,
                        help="config YAML of the matching variant, e.g. config/gausstr_featup.yaml")
    parser.add_argument("--backbone-out", default=None,
                        help="also write the frozen backbone weights (Talk2DINO's DINOv2) here")
    parser.add_argument("overrides", nargs="*", default=[], metavar="section.key=value", help="config overrides")
    return parser


@console_script("gausstr-convert")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = load_config(args.config, args.overrides)
    summary = convert_authors_checkpoint(args.src, args.dst, config, args.backbone_out)
    print(f"wrote {args.dst}: {summary['parameters']:,} parameters", end="")
    if summary["prototypes"] is not None:
        print(f", text prototypes {summary['prototypes']}", end="")
    if summary["backbone_parameters"]:
        print(f", backbone {summary['backbone_parameters']:,} parameters", end="")
    print()
    for note in summary["notes"]:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
