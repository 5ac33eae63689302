"""Learning-rate schedule: linear warm-up then step decay at the milestones; train.lr_anneal."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gausstr_core.cli.train import build_parser, config_from_args
from gausstr_core.config import TrainConfig
from gausstr_core.train.loop import train
from gausstr_core.train.schedule import anneal_factor, warmup_multistep


def test_warmup_rises_linearly_to_one() -> None:
    factor = warmup_multistep(10, (), 0.1, warmup_start=0.01)
    values = [factor(it) for it in range(12)]
    assert values[0] == pytest.approx(0.01)
    assert values[5] == pytest.approx(0.01 + 0.99 * 5 / 10)
    assert values[10:] == [1.0, 1.0]
    assert all(a < b for a, b in zip(values[:10], values[1:11]))


def test_milestones_multiply_by_gamma() -> None:
    factor = warmup_multistep(0, (30, 20), 0.5)
    assert [factor(it) for it in (0, 19, 20, 29, 30, 1000)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_lambda_scheduler_follows_the_factor_and_resumes() -> None:
    factor = warmup_multistep(4, (6,), 0.1)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=2.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    seen = []
    for _ in range(3):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    optimizer2 = torch.optim.SGD([param], lr=2.0)
    scheduler2 = torch.optim.lr_scheduler.LambdaLR(optimizer2, factor)
    scheduler2.load_state_dict(state)
    for _ in range(5):
        seen.append(scheduler2.get_last_lr()[0])
        optimizer2.step()
        scheduler2.step()
    assert seen == pytest.approx([2.0 * factor(it) for it in range(8)])


@pytest.mark.parametrize("bad", [dict(warmup_iters=-1), dict(warmup_start=0.0), dict(warmup_start=1.5)])
def test_bad_warmup_is_rejected(bad: dict) -> None:
    kwargs = dict(warmup_iters=5, milestone_iters=(), gamma=0.1) | bad
    with pytest.raises(ValueError, match="warm-up"):
        warmup_multistep(**kwargs)


def test_anneal_falls_linearly_to_zero_over_the_last_fraction() -> None:
    assert [anneal_factor(u, 0.4) for u in (0.0, 0.6, 0.7, 0.9, 1.0, 1.2)] == pytest.approx([1, 1, 0.75, 0.25, 0, 0])
    assert [anneal_factor(u, 0.0) for u in (0.0, 0.99, 1.0)] == [1.0, 1.0, 1.0]


def test_lr_anneal_scales_the_full_steps_learning_rate(tiny_train_args: list[str], tmp_path: Path) -> None:
    """train.lr_anneal 0.5 over max_steps 4: steps 0-2 at the schedule's rate, step 3 (3/4 of the budget used)
    at half of it."""
    argv = [*tiny_train_args, "train.lr_anneal=0.5", "--work-dir", str(tmp_path)]
    config = config_from_args(build_parser().parse_intermixed_args(argv))
    result = train(config, device="cpu", max_steps=4, show_progress=False)
    cfg, per_epoch = config.train, 3  # the world's 3 keyframes, batch 1
    schedule = warmup_multistep(cfg.warmup_iters, tuple(m * per_epoch for m in cfg.lr_milestones), cfg.lr_gamma)
    expected = [cfg.lr * schedule(it) * factor for it, factor in enumerate((1, 1, 1, 0.5))]
    assert [t["lr"] for t in result.terms] == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"lr_anneal must be in \[0, 1\)"):
        TrainConfig(lr_anneal=1.0)
