"""Shared pytest set-up: GPU auto-skip, per-test ROS domains, quiet threads on the 2-core CI."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest
import torch

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
