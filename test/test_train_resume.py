"""Exact resume of `gausstr-train`: 2N uninterrupted CPU steps give bitwise the same weights as N
steps, a stop (or a kill -9), and N resumed steps; a mismatched config is refused with a clear error.
(A kill inside a checkpoint write: test_train_crash.py.)

The world (conftest.tiny_train_args) has 3 keyframes, so one epoch is 3 steps at batch size 1:
with N = 2 the resumed part starts mid-epoch and crosses an epoch boundary.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gausstr_core.cli.train import build_parser, config_from_args, main
from gausstr_core.config import Config
from gausstr_core.model.checkpoint import load_checkpoint
from gausstr_core.train.loop import latest_checkpoint, train

N = 2
CKPT = f"train.checkpoint_every={N}"


def _config(args: list[str], work_dir: Path, *extra: str) -> Config:
    return config_from_args(build_parser().parse_intermixed_args([*args, *extra, "--work-dir", str(work_dir)]))


def _child_env() -> dict[str, str]:
    """One intra-op thread, as in this process (conftest): identical floating-point results."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ in {different[:5]}"


def _train_state(path: Path) -> dict:
    return load_checkpoint(path)["train_state"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_train_args: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Work dir of 2N uninterrupted steps (no logging during training)."""
    work_dir = tmp_path_factory.mktemp("uninterrupted")
    result = train(_config(tiny_train_args, work_dir, CKPT), device="cpu", max_steps=2 * N, show_progress=False)
    assert result.steps == 2 * N and len(result.losses) == 2 * N
    return work_dir


def test_checkpoints_hold_the_training_state(uninterrupted: Path) -> None:
    state = _train_state(latest_checkpoint(uninterrupted))
    assert (state["step"], state["epoch"], state["consumed"], state["world_size"]) == (2 * N, 1, 1, 1)
    assert {"optimizer", "scheduler", "rng", "loader_rng"} <= state.keys()
    epoch = _train_state(uninterrupted / "checkpoints" / "epoch_1.pt")
    assert (epoch["step"], epoch["epoch"], epoch["consumed"]) == (3, 1, 0)
    assert (uninterrupted / "config.yaml").is_file()


def test_stop_and_resume_is_bitwise_exact_and_logging_changes_nothing(
    tiny_train_args: list[str], uninterrupted: Path, tmp_path: Path
) -> None:
    # Scalars every step and images every 2 steps here; none in the uninterrupted run.
    logged = ("train.log_every=1", "train.image_log_every=2")
    config = _config(tiny_train_args, tmp_path, CKPT, *logged)
    first = train(config, device="cpu", max_steps=N, show_progress=False)
    assert first.steps == N and _train_state(first.last_checkpoint)["consumed"] == N
    second = train(config, device="cpu", resume="auto", max_steps=2 * N, show_progress=False)
    assert second.steps == 2 * N and len(second.losses) == N
    _assert_same_weights(
        load_checkpoint(latest_checkpoint(tmp_path))["state_dict"],
        load_checkpoint(latest_checkpoint(uninterrupted))["state_dict"],
    )
    again = train(config, device="cpu", resume="auto", max_steps=2 * N, show_progress=False)
    assert again.steps == 2 * N and again.losses == []  # budget already spent: no step

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    steps = [e.step for e in events.Scalars("train/total")]
    assert steps == list(range(1, 2 * N + 1))
    assert {"train/feature", "train/depth_silog", "train/lr", "train/step_seconds"} <= set(events.Tags()["scalars"])
    assert {"depth/rendered", "features/rendered_pca"} <= set(events.Tags()["images"])


def test_kill_9_and_resume_is_bitwise_exact(tiny_train_args: list[str], uninterrupted: Path, tmp_path: Path) -> None:
    argv = [*tiny_train_args, CKPT, "--work-dir", str(tmp_path), "--max-steps", "100", "--no-progress"]
    child = subprocess.Popen(
        [sys.executable, "-m", "gausstr_core.cli.train", *argv], env=_child_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    latest = latest_checkpoint(tmp_path)
    deadline = time.monotonic() + 120
    while not latest.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    _, stderr = child.communicate()
    assert child.returncode == -signal.SIGKILL, stderr
    killed_at = _train_state(latest)["step"]
    assert N <= killed_at < 2 * N  # the step-N checkpoint, or the epoch-end one if the kill came late

    config = _config(tiny_train_args, tmp_path, CKPT)
    resumed = train(config, device="cpu", resume=latest, max_steps=2 * N, show_progress=False)
    assert resumed.steps == 2 * N and len(resumed.losses) == 2 * N - killed_at
    _assert_same_weights(
        load_checkpoint(latest)["state_dict"], load_checkpoint(latest_checkpoint(uninterrupted))["state_dict"]
    )


def test_mismatched_config_is_refused_with_a_clear_error(
    tiny_train_args: list[str], uninterrupted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = str(latest_checkpoint(uninterrupted))
    config = _config(tiny_train_args, tmp_path, "model.embed_dims=32", "train.pca_dims=16")
    expected = r"cannot resume from .*latest\.pt: config differs: model: .*; train\.pca_dims: checkpoint 32 vs now 16"
    with pytest.raises(ValueError, match=expected):
        train(config, device="cpu", resume=checkpoint, show_progress=False)

    argv = [*tiny_train_args, "data.input_size=[48,96]", "--work-dir", str(tmp_path), "--resume", checkpoint]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "config differs: data.input_size: checkpoint [56, 96] vs now [48, 96]" in err

    assert main([*tiny_train_args, "--work-dir", str(tmp_path), "--resume", str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
