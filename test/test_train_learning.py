"""A brief training run of the tiny config on a tiny synthetic world lowers the loss.

Margin: the mean total loss of the last 5 of 30 steps must be below 0.85 x that of the first 5
(measured: 0.75 on one CPU thread; the run is deterministic, so the margin guards against
regressions rather than noise). The benchmark benchmarks/learn_synthetic.py reports the real curve.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from gausstr_core.cli.train import build_parser, config_from_args
from gausstr_core.train.loop import train

STEPS = 30
MARGIN = 0.85


def test_losses_fall(tiny_train_args: list[str], tmp_path: Path) -> None:
    argv = [*tiny_train_args, "train.lr=0.001", "train.lr_milestones=[1000]", "train.epochs=100",
            "--work-dir", str(tmp_path)]
    config = config_from_args(build_parser().parse_intermixed_args(argv))
    losses = train(config, device="cpu", max_steps=STEPS, show_progress=False).losses
    assert len(losses) == STEPS
    first, last = statistics.fmean(losses[:5]), statistics.fmean(losses[-5:])
    assert last < MARGIN * first, f"loss fell only from {first:.2f} to {last:.2f}: {losses}"
