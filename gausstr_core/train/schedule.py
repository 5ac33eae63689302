"""Learning-rate schedule: linear warm-up, then step decay at epoch milestones."""

from __future__ import annotations

from collections.abc import Callable


def warmup_multistep(
    warmup_iters: int, milestone_iters: tuple[int, ...], gamma: float, warmup_start: float = 1e-3
) -> Callable[[int], float]:
    """lr multiplier for iteration `it` (0-based), for torch.optim.lr_scheduler.LambdaLR.

    Linear from `warmup_start` to 1 over `warmup_iters`, times gamma^(milestones passed).
    """
    if warmup_iters < 0 or not 0 < warmup_start <= 1:
        raise ValueError(f"warmup_multistep: bad warm-up ({warmup_iters} iters from {warmup_start})")
    milestones = sorted(milestone_iters)

    def factor(it: int) -> float:
        warm = 1.0 if it >= warmup_iters else warmup_start + (1 - warmup_start) * it / warmup_iters
        return warm * gamma ** sum(it >= m for m in milestones)

    return factor
