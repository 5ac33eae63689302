"""Shared by the predictor / eval / viz tests: a one-scene synthetic world and an untrained tiny model."""

from __future__ import annotations

from pathlib import Path

import torch

from gausstr_core.config import Config, load_config
from gausstr_core.data.synthetic.generate import SynthOptions, generate_dataset
from gausstr_core.model import GaussTR, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
# scale_multiplier 1 (authors: 7.5) keeps the untrained Gaussians small, so voxelising stays fast.
TINY_OVERRIDES = ["model.scale_multiplier=1.0"]


def tiny_config() -> Config:
    return load_config(REPO / "config/tiny.yaml", TINY_OVERRIDES)


def synthetic_world(root: Path, samples_per_scene: int):
    """One scene of 240x135 images with caches at the tiny input size (112x200, patch 8, 64 channels)."""
    torch.set_num_threads(1)
    return generate_dataset(root / "data", SynthOptions(
        scenes=1, samples_per_scene=samples_per_scene, image_size=(240, 135), input_size=(112, 200), sweeps=False,
        patch_size=8, feature_dim=64))


def untrained_checkpoint(path: Path, config: Config) -> Path:
    """A seeded, untrained GaussTR of `config.model` saved with `config`."""
    torch.manual_seed(0)
    save_checkpoint(path, GaussTR(config.model), config)
    return path
