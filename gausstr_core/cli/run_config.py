"""Config of an evaluation / visualisation run: a checkpoint's config with the data it should read.

Order: the checkpoint's config; then the data, grid and inference keys of `--config FILE` (e.g. the
synthetic world's gausstr_synthetic.yaml; its model and train sections are ignored: the model is
the checkpoint's); then `--data DIR` (dataroot DIR, Occ3D labels DIR/gts, caches DIR/cache, and
the version folder found there when the configured one is missing); then dotted overrides.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from gausstr_core.config import Config, apply_overrides, config_from_dict
from gausstr_core.data.nuscenes import find_version

RUN_SECTIONS = ("data", "grid", "inference")


def add_run_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. inference.filter_gaussians=true")
    parser.add_argument("--config", help="YAML whose data / grid / inference keys replace the checkpoint's")
    parser.add_argument("--data", help="dataset root (nuScenes layout: <version>/, samples/, gts/, cache/)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def run_config(base: Config, config_file: str | None, data_dir: str | None, overrides: list[str]) -> Config:
    """Merge as the module docstring says; errors name the bad file or key."""
    values: dict[str, Any] = base.to_dict()
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"config file {path} must hold a mapping")
        for section in RUN_SECTIONS:
            if not isinstance(loaded.get(section, {}), dict):
                raise ValueError(f"config file {path}: section {section!r} must be a mapping")
            values[section].update(loaded.get(section) or {})
    if data_dir:
        root = Path(data_dir).expanduser().resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"--data folder not found: {root}")
        data = values["data"]
        data.update(dataroot=str(root), occ_root=str(root / "gts"), cache_root=str(root / "cache"))
        data["version"] = find_version(root, data["version"])
    fixed = [item for item in overrides if item.strip().startswith(("model.", "model="))]
    if fixed:
        raise ValueError(f"overrides {fixed}: the model section comes from the checkpoint and cannot be overridden")
    return config_from_dict(apply_overrides(values, overrides))
