"""The node's params file (config/occupancy.yaml) rendered from its parameter table (node_params.PARAMETERS).

    python -m gausstr_ros.tools.params_yaml config/occupancy.yaml          # rewrite it after editing the table
    python -m gausstr_ros.tools.params_yaml config/occupancy.yaml --check  # exit 1 if it is not current

test_node_units checks that the repository's file is exactly `render_params_yaml()`.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from gausstr_core.atomic_files import write_atomic
from gausstr_core.cli.entry import CliParser, console_script
from gausstr_ros.node_params import GROUPS, PARAMETERS, ParamSpec

WIDTH = 110
_INDENT = " " * 4
HEADER = """\
# Parameters of the gausstr_occupancy node (executable occupancy_node). GENERATED from the table in
# gausstr_ros/node_params.py by `python -m gausstr_ros.tools.params_yaml config/occupancy.yaml`: edit
# the table, not this file. The node declares exactly these (plus use_sim_time, which ROS handles);
# launch/occupancy.launch.py only overrides some. (live): changeable while the node is active; the others
# take effect at the next configure, (read at start) ones only when the node starts.
# `/**` applies to the node under any name or namespace.
/**:
  ros__parameters:
"""


def yaml_value(value: Any) -> str:
    """A parameter default as YAML that ROS reads back with the same type (bool, int, float, str, [str])."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        if "." not in text:  # YAML 1.1 readers take 1e-05 for a string
            raise ValueError(f"float {value!r} has no YAML 1.1 spelling with a decimal point")
        return text
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return "[" + ", ".join(json.dumps(str(item)) for item in value) + "]"


def _entry(spec: ParamSpec) -> list[str]:
    notes = [f"range [{spec.range[0]:g}, {spec.range[1]:g}]"] if spec.range is not None else []
    notes += ["live"] if spec.live else []
    notes += ["read at start"] if spec.read_only else []
    comment = spec.description + (f" ({', '.join(notes)})" if notes else "")
    lines = textwrap.wrap(comment, WIDTH, initial_indent=_INDENT + "# ", subsequent_indent=_INDENT + "# ")
    key = f"{_INDENT}{spec.name}: "
    lines += textwrap.wrap(yaml_value(spec.default), WIDTH, initial_indent=key,
                           subsequent_indent=" " * (len(key) + 1), break_long_words=False, break_on_hyphens=False)
    return lines


def render_params_yaml() -> str:
    """The params file: every parameter of PARAMETERS with its default, under its group's heading."""
    lines = []
    for group, heading in GROUPS.items():
        specs = [spec for spec in PARAMETERS.values() if spec.group == group]
        lines += ["", f"{_INDENT}# --- {heading} ---"] + [line for spec in specs for line in _entry(spec)]
    return HEADER + "\n".join(lines[1:]) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="python -m gausstr_ros.tools.params_yaml", description=__doc__.split("\n")[0])
    p.add_argument("path", help="the params file, e.g. config/occupancy.yaml")
    p.add_argument("--check", action="store_true", help="only compare; exit 1 if the file differs")
    return p


@console_script("params_yaml")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    text, path = render_params_yaml(), Path(args.path)
    if args.check:
        current = path.read_text() if path.is_file() else None
        if current != text:
            print(f"{path} is not the one rendered from gausstr_ros/node_params.py; rerun without --check",
                  file=sys.stderr)
            return 1
        return 0
    write_atomic(path, lambda handle: handle.write(text.encode()))
    print(f"wrote {path} ({len(PARAMETERS)} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
