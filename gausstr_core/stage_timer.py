"""Wall time per named stage (ms), CUDA-synchronised only when profiling."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch


class StageTimer:
    """`with timer("stage"):` adds the block's wall time (ms) to `timer.timings["stage"]` (stages repeat: times add).

    sync: a CUDA device to synchronise at both ends of every block (profiling: each stage's time
    then holds its own GPU work), or None / a CPU device: no synchronisation (GPU work a stage queued
    may finish inside a later one; the hot path never waits on the GPU for a timing).
    Unknown stage names are a KeyError.
    """

    def __init__(self, stages: Iterable[str], sync: torch.device | None = None) -> None:
        self.timings: dict[str, float] = dict.fromkeys(stages, 0.0)
        self.sync = sync if sync is not None and sync.type == "cuda" else None

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if stage not in self.timings:
            raise KeyError(f"unknown stage {stage!r}; known: {', '.join(self.timings)}")
        self._synchronize()
        start = time.perf_counter()
        yield
        self._synchronize()
        self.timings[stage] += (time.perf_counter() - start) * 1e3

    def _synchronize(self) -> None:
        if self.sync is not None:
            torch.cuda.synchronize(self.sync)
