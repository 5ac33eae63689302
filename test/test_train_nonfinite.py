"""A training step with a non-finite gradient (fp32, no scaler to catch it) is skipped, not applied."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gausstr_core.cli.train import build_parser, config_from_args
from gausstr_core.model import GaussTR
from gausstr_core.model.checkpoint import load_checkpoint
from gausstr_core.train import loop
from gausstr_core.train.loop import train


def test_a_non_finite_gradient_skips_that_update(
    tiny_train_args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step whose loss is NaN leaves every weight as it was (instead of making them all NaN); the next step
    trains as usual."""
    real_losses, calls = loop.gausstr_losses, []

    def nan_first(*args, **kwargs):
        total, terms = real_losses(*args, **kwargs)
        calls.append(1)
        return (total * float("nan"), terms) if len(calls) == 1 else (total, terms)

    monkeypatch.setattr(loop, "gausstr_losses", nan_first)
    argv = [*tiny_train_args, "--work-dir", str(tmp_path)]
    config = config_from_args(build_parser().parse_intermixed_args(argv))
    first = train(config, device="cpu", max_steps=1, show_progress=False)
    torch.manual_seed(config.train.seed)  # the loop's initial weights
    initial = GaussTR(config.model).state_dict()
    after_nan = load_checkpoint(first.last_checkpoint)["state_dict"]
    assert first.terms[0]["update_skipped"] == 1.0
    assert all(torch.equal(after_nan[k], initial[k]) for k in initial)
    second = train(config, device="cpu", resume=first.last_checkpoint, max_steps=2, show_progress=False)
    trained = load_checkpoint(second.last_checkpoint)["state_dict"]
    assert second.terms[0]["update_skipped"] == 0.0
    assert all(torch.isfinite(v).all() for v in trained.values() if v.is_floating_point())
    assert any(not torch.equal(trained[k], initial[k]) for k in initial)
