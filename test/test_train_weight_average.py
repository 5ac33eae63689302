"""train.ema_decay: the weights' moving average is what checkpoints hold; the live weights train as without it
and resume bit-exactly (the world: conftest.tiny_train_args, 3 keyframes, batch 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from gausstr_core.cli.train import build_parser, config_from_args
from gausstr_core.config import Config, TrainConfig
from gausstr_core.model import GaussTR
from gausstr_core.model.checkpoint import load_checkpoint
from gausstr_core.train.loop import latest_checkpoint, train
from gausstr_core.train.weight_average import WeightAverage

DECAY = 0.95
STEPS = 3


def _config(args: list[str], work_dir: Path, *extra: str) -> Config:
    return config_from_args(build_parser().parse_intermixed_args([*args, *extra, "--work-dir", str(work_dir)]))


def test_update_follows_the_warmed_up_decay_and_copies_integer_buffers() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.5)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    assert not any(p.requires_grad for p in average.module.parameters()) and not average.module.training
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].num_batches_tracked.fill_(7)
    assert average.rate() == pytest.approx(2 / 11)  # warm-up: (1 + n) / (10 + n) < decay at n = 1
    average.update(model)
    expected = start["0.weight"] * 2 / 11 + model[0].weight.detach() * 9 / 11
    assert torch.allclose(average.module[0].weight, expected)
    assert int(average.module[1].num_batches_tracked) == 7
    average.updates = 100
    assert average.rate() == 0.5  # the decay once the warm-up passes it
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\)"):
        WeightAverage(model, decay=1.0)
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        TrainConfig(ema_decay=1.0)


def test_checkpoints_hold_the_average_and_the_live_weights_train_as_without_it(
    tiny_train_args: list[str], tmp_path: Path
) -> None:
    """Step by step (each a resumed run), the checkpoint's state_dict is the average of the live weights
    so far; the resumed chain ends bitwise where an uninterrupted run does, whose live weights are bitwise
    those of a run without the average."""
    ema = f"train.ema_decay={DECAY}"
    config = _config(tiny_train_args, tmp_path / "steps", ema)
    torch.manual_seed(config.train.seed)
    expected = {k: v.clone() for k, v in GaussTR(config.model).state_dict().items()}  # the initial weights
    for step in range(1, STEPS + 1):
        train(config, device="cpu", resume="auto", max_steps=step, show_progress=False)
        ckpt = load_checkpoint(latest_checkpoint(tmp_path / "steps"))
        live, state = ckpt["train_state"]["live_state_dict"], ckpt["train_state"]
        assert state["step"] == step and state["average_updates"] == step
        rate = min(DECAY, (1 + step) / (10 + step))
        expected = {k: torch.lerp(v, live[k], 1 - rate) if v.is_floating_point() else live[k]
                    for k, v in expected.items()}
        assert all(torch.allclose(ckpt["state_dict"][k], expected[k], atol=1e-6) for k in expected)
        assert any(not torch.equal(ckpt["state_dict"][k], live[k]) for k in live)

    whole = train(_config(tiny_train_args, tmp_path / "whole", ema), device="cpu", max_steps=STEPS,
                  show_progress=False)
    plain = train(_config(tiny_train_args, tmp_path / "plain"), device="cpu", max_steps=STEPS, show_progress=False)
    chained = load_checkpoint(latest_checkpoint(tmp_path / "steps"))
    uninterrupted = load_checkpoint(whole.last_checkpoint)
    without = load_checkpoint(plain.last_checkpoint)
    assert "live_state_dict" not in without["train_state"]
    assert all(torch.equal(chained["state_dict"][k], v) for k, v in uninterrupted["state_dict"].items())
    live = uninterrupted["train_state"]["live_state_dict"]
    assert all(torch.equal(chained["train_state"]["live_state_dict"][k], live[k]) for k in live)
    assert all(torch.equal(live[k], without["state_dict"][k]) for k in live)
