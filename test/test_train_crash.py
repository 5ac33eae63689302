"""A `gausstr-train` process killed inside a checkpoint write (temp file complete, just before the
rename) leaves the previous checkpoint intact, loadable and resumable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from gausstr_core.cli.train import build_parser, config_from_args
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


def test_kill_during_checkpoint_write_keeps_the_previous_checkpoint(
    tiny_train_args: list[str], tmp_path: Path
) -> None:
    argv = [*tiny_train_args, "train.checkpoint_every=1", "--work-dir", str(tmp_path), "--max-steps", "4",
            "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", KILL_IN_SECOND_WRITE, *argv], env=env,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr
    checkpoints = tmp_path / "checkpoints"
    leftovers = list(checkpoints.glob(".latest.pt.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0  # the step-2 write that never landed
    assert load_checkpoint(checkpoints / "latest.pt")["train_state"]["step"] == 1

    config = config_from_args(build_parser().parse_intermixed_args([*tiny_train_args, "--work-dir", str(tmp_path)]))
    resumed = train(config, device="cpu", resume="auto", max_steps=2, show_progress=False)
    assert resumed.steps == 2 and len(resumed.losses) == 1
