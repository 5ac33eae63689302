"""Validation during training: scores logged every train.val_every epochs, best.pt kept by
train.best_metric, the best so far surviving a resume. (World: conftest.tiny_train_args, 3
keyframes, so one epoch is 3 steps at batch size 1.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from gausstr_core.cli.train import build_parser, config_from_args
from gausstr_core.config import load_config
from gausstr_core.model.checkpoint import load_checkpoint
from gausstr_core.train.distributed import init_distributed
from gausstr_core.train.loop import _Trainer, train

VAL = ("train.val_every=1", "train.val_limit=1", "train.best_metric=iou", "train.log_every=1")


def _config(args: list[str], work_dir: Path, *extra: str):
    return config_from_args(build_parser().parse_intermixed_args([*args, *VAL, *extra, "--work-dir", str(work_dir)]))


@pytest.mark.slow
def test_validation_writes_best_and_resume_keeps_it(
    tiny_train_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tiny_train_args, tmp_path)
    train(config, device="cpu", max_steps=3, show_progress=False)
    out = capsys.readouterr().out
    assert "validation after epoch 1 (step 3, split val)" in out and "miou17" in out and "density_iou" in out
    best_path = tmp_path / "checkpoints" / "best.pt"
    assert best_path.is_file(), "the first validation is always the best so far"
    best = load_checkpoint(best_path)["train_state"]["best"]
    assert best["metric"] == "iou" and best["epoch"] == 1 and best["step"] == 3 and 0 <= best["value"] <= 1
    assert load_checkpoint(tmp_path / "checkpoints" / "latest.pt")["train_state"]["best"] == best
    assert list((tmp_path / "tensorboard").iterdir())

    # A resumed run starts from the best so far, and a validation that does not beat it keeps it.
    trainer = _Trainer(config, init_distributed("cpu"), show_progress=False)
    trainer.load(tmp_path / "checkpoints" / "latest.pt")
    assert trainer.best == best
    trainer.best = {**best, "value": 2.0}  # unreachable
    assert trainer.validate() is False and trainer.best["value"] == 2.0
    trainer.best = None
    assert trainer.validate() is True and trainer.best["value"] == pytest.approx(best["value"])


def test_bad_validation_settings_are_named() -> None:
    with pytest.raises(ValueError, match="train.best_metric"):
        load_config(None, ["train.best_metric=accuracy"])
    with pytest.raises(ValueError, match="val_every"):
        load_config(None, ["train.val_every=-1"])
