"""Shared pytest set-up: GPU auto-skip, per-test ROS domains, quiet threads on the 2-core CI."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

# isort: off
import gausstr_core  # noqa: F401  (before torch: passive OpenMP waiting, see gausstr_core/__init__.py)
import torch

# isort: on

REPO_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
os.environ.setdefault("ROS_LOG_DIR", str(Path(sys.prefix) / "ros_log"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Two cores: one intra-op thread per test process avoids oversubscription (much faster here).
torch.set_num_threads(1)

# ROS domain ids 0..101 are safe on Linux; give every test its own, offset by the process id so
# that parallel pytest runs on one machine do not hear each other.
_domain_ids = itertools.count((os.getpid() % 40) * 2 + 10)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def ros_domain_id(monkeypatch: pytest.MonkeyPatch) -> int:
    """A ROS_DOMAIN_ID used by no other test of this run, exported for child processes too."""
    domain = next(_domain_ids) % 100 + 1
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    return domain


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


# Training tests (test_train_*.py): config/tiny.yaml on a tiny synthetic world, two 56x96 cameras.
# Gaussian scales are depth x scale_multiplier / fx in original pixels; the authors' 7.5 is for
# 1600-pixel-wide originals, so 96-pixel originals take 7.5 x 96 / 1600.
TINY_TRAIN_OVERRIDES = (
    "model.scale_multiplier=0.45",
    "data.input_size=[56,96]",
    "data.cameras=[CAM_FRONT,CAM_BACK]",
    "train.log_every=1000",
    "train.image_log_every=1000",
)


@pytest.fixture(scope="module")
def tiny_train_args(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """`gausstr-train` arguments (no work dir) for a world of 1 scene x 3 keyframes, 96x56
    images, patch-8 caches, generated once per module (~3 s)."""
    from gausstr_core.data.synthetic.generate import SynthOptions, generate_dataset

    root = tmp_path_factory.mktemp("train_world")
    options = SynthOptions(scenes=1, samples_per_scene=3, sweeps=False, image_size=(96, 56), patch_size=8)
    generate_dataset(root, options)
    return [str(REPO_ROOT / "config" / "tiny.yaml"), *TINY_TRAIN_OVERRIDES, "--data", str(root), "--device", "cpu"]
