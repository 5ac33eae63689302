"""Learning-rate schedule: linear warm-up, then step decay at epoch milestones; the budget-relative anneal."""

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


def anneal_factor(used: float, fraction: float) -> float:
    """Learning-rate factor with `used` of the budget spent (0..1): 1 until `fraction` of it is left, then
    falling linearly to 0 at its end; 1 throughout for fraction 0."""
    return min(1.0, max(0.0, 1 - used) / fraction) if fraction > 0 else 1.0
