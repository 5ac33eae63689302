"""Learning-rate schedule: linear warm-up then step decay at the milestones."""

from __future__ import annotations

import pytest
import torch

from gausstr_core.train.schedule import warmup_multistep


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
