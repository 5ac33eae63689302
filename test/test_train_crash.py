"""Durable training checkpoints: a `gausstr-train` process killed inside a checkpoint write (temp
file complete, just before the rename) leaves the previous checkpoint intact, loadable and
resumable, and its temporary file is removed by the next run; a kill between the epoch_N.pt and
latest.pt renames loses neither; a full disk or a permission error ends in one line naming the
path, the previous checkpoint intact."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gausstr_core.cli.train import build_parser, config_from_args, main
from gausstr_core.model.checkpoint import load_checkpoint
from gausstr_core.train.loop import train

KILL_IN_SECOND_WRITE = """
import os, signal, sys
from gausstr_core.cli.train import main

real_replace, writes = os.replace, []

def replace(src, dst):
    if str(dst).endswith("latest.pt"):
        writes.append(dst)
        if len(writes) == 2:  # the temp file is complete; die just before the rename
            os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)

os.replace = replace
sys.exit(main(sys.argv[1:]))
"""


def _killed_run(script: str, args: list[str], work_dir: Path, *extra: str) -> Path:
    """Run gausstr-train with `script`'s os.replace hook in a child that must die by SIGKILL; its checkpoints."""
    argv = [*args, *extra, "--work-dir", str(work_dir), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", script, *argv], env=env, capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr
    return work_dir / "checkpoints"


def test_kill_during_checkpoint_write_keeps_the_previous_checkpoint(
    tiny_train_args: list[str], tmp_path: Path
) -> None:
    checkpoints = _killed_run(KILL_IN_SECOND_WRITE, tiny_train_args, tmp_path, "train.checkpoint_every=1",
                              "--max-steps", "4")
    leftovers = list(checkpoints.glob(".latest.pt.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0  # the step-2 write that never landed
    assert load_checkpoint(checkpoints / "latest.pt")["train_state"]["step"] == 1

    config = config_from_args(build_parser().parse_intermixed_args([*tiny_train_args, "--work-dir", str(tmp_path)]))
    resumed = train(config, device="cpu", resume="auto", max_steps=2, show_progress=False)
    assert resumed.steps == 2 and len(resumed.losses) == 1
    assert not list(checkpoints.glob(".*.tmp"))  # the dead writer's temporary file was removed


KILL_BETWEEN_EPOCH_AND_LATEST = """
import os, signal, sys
from gausstr_core.cli.train import main

real_replace, last = os.replace, []

def replace(src, dst):
    if str(dst).endswith("latest.pt") and last and str(last[-1]).endswith("epoch_1.pt"):
        os.kill(os.getpid(), signal.SIGKILL)  # epoch_1.pt is in place, latest.pt not yet
    last.append(dst)
    real_replace(src, dst)

os.replace = replace
sys.exit(main(sys.argv[1:]))
"""


def test_kill_between_the_epoch_and_latest_renames_loses_no_checkpoint(
    tiny_train_args: list[str], tmp_path: Path
) -> None:
    checkpoints = _killed_run(KILL_BETWEEN_EPOCH_AND_LATEST, tiny_train_args, tmp_path, "train.checkpoint_every=2",
                              "--max-steps", "3")
    epoch = load_checkpoint(checkpoints / "epoch_1.pt")
    assert epoch["train_state"]["step"] == 3 and epoch["train_state"]["epoch"] == 1
    assert load_checkpoint(checkpoints / "latest.pt")["train_state"]["step"] == 2  # the previous one, intact

    config = config_from_args(build_parser().parse_intermixed_args([*tiny_train_args, "--work-dir", str(tmp_path)]))
    resumed = train(config, device="cpu", resume="auto", max_steps=3, show_progress=False)
    assert resumed.steps == 3 and resumed.epochs_done == 1
    again = load_checkpoint(checkpoints / "epoch_1.pt")["state_dict"]
    assert all(torch.equal(again[k], epoch["state_dict"][k]) for k in again)  # the same epoch, bit for bit
    assert os.path.samefile(checkpoints / "epoch_1.pt", checkpoints / "latest.pt")  # one file, two names


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES], ids=["disk full", "permission"])
def test_storage_errors_end_in_one_line_and_keep_the_previous_checkpoint(
    code: int, tiny_train_args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    real_save, calls = torch.save, []

    def failing_save(obj, handle, *args, **kwargs):
        calls.append(handle)
        if len(calls) == 2:  # the second checkpoint: half written, then the file system refuses
            handle.write(b"partial")
            raise OSError(code, os.strerror(code))
        real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    argv = [*tiny_train_args, "train.checkpoint_every=1", "--work-dir", str(tmp_path), "--max-steps", "2",
            "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    latest = tmp_path / "checkpoints" / "latest.pt"
    need = "it needs about" if code == errno.ENOSPC else "it needs write permission on folder"
    assert len(err) == 1 and err[0].startswith(f"gausstr-train: error: cannot write {latest}: ") and need in err[0]
    assert load_checkpoint(latest)["train_state"]["step"] == 1
    assert sorted(p.name for p in latest.parent.iterdir()) == ["latest.pt"]  # no temporary left behind
