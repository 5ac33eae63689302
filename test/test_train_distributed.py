"""`gausstr-train` under `torchrun --nproc-per-node 2` on CPU (gloo): identical parameters on both
ranks after every step, one shard per rank, only rank 0 writes, resumable on 2 or 1 processes.

The ranks run a small wrapper around `gausstr_core.cli.train.main` that trains 3 steps, then
resumes from the checkpoint to step 5 (one torchrun launch to save start-up time: the wrapper owns
the process group, which train() then leaves alive), appending to a
per-rank trace file: after every step the step number, epoch, the batch's sample tokens and a
SHA-256 of all parameters; and a line for every checkpoint, config and TensorBoard writer created.
One epoch is 2 steps (3 samples padded to 4 over 2 ranks).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gausstr_core.cli.train import build_parser, config_from_args
from gausstr_core.data import GaussTRDataset
from gausstr_core.model.checkpoint import load_checkpoint
from gausstr_core.train.loop import latest_checkpoint, train
from gausstr_core.train.sampler import ResumableDistributedSampler

TRACED_TRAIN = """
import hashlib, os, sys
from pathlib import Path

import torch.distributed as dist
import torch.utils.tensorboard

import gausstr_core.train.loop as loop
from gausstr_core.cli.train import main

trace = Path(sys.argv[1]) / f"rank{os.environ['RANK']}.txt"


def note(line):
    with trace.open("a") as f:
        f.write(line + "\\n")


def traced(function, label):
    def wrapper(*args, **kwargs):
        note(f"write {label}")
        return function(*args, **kwargs)
    return wrapper


class TracedWriter(torch.utils.tensorboard.SummaryWriter):
    def __init__(self, *args, **kwargs):
        note("write tensorboard")
        super().__init__(*args, **kwargs)


def traced_step(self, batch, lr_factor=1.0):
    terms = train_step(self, batch, lr_factor)
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in self.model.parameters()))
    note(f"step {self.step + 1} {self.epoch} {','.join(batch.tokens)} {digest.hexdigest()}")
    return terms


train_step = loop._Trainer.train_step
loop._Trainer.train_step = traced_step
loop.save_checkpoint = traced(loop.save_checkpoint, "checkpoint")
loop.save_config = traced(loop.save_config, "config")
torch.utils.tensorboard.SummaryWriter = TracedWriter
dist.init_process_group("gloo")
code = main([*sys.argv[2:], "--max-steps", "3"]) or main([*sys.argv[2:], "--max-steps", "5", "--resume"])
dist.destroy_process_group()
sys.exit(code)
"""

EXTRA = ("train.epochs=3", "train.log_every=1", "train.checkpoint_every=1000")


def _torchrun(tmp: Path, trace_dir: Path, args: list[str]) -> None:
    script = tmp / "traced_train.py"
    script.write_text(TRACED_TRAIN)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(script), str(trace_dir), *args, "--no-progress"]
    launcher = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = launcher.communicate(timeout=300)
    finally:
        if launcher.poll() is None:  # timed out: take the workers down too
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
    assert launcher.returncode == 0, output[-5000:]


def _read_trace(trace_dir: Path, rank: int) -> tuple[list[tuple[int, int, str, str]], list[str]]:
    """(steps as (step, epoch, tokens, digest), written things) of one rank."""
    path = trace_dir / f"rank{rank}.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    steps = [(int(s), int(e), tokens, digest) for _, s, e, tokens, digest in
             (line.split() for line in lines if line.startswith("step "))]
    writes = [line.split()[1] for line in lines if line.startswith("write ")]
    return steps, writes


def _expected_tokens(tokens: list[str], world: int, rank: int, epoch: int) -> list[str]:
    sampler = ResumableDistributedSampler(len(tokens), world, rank, seed=0)
    sampler.set_epoch(epoch)
    return [tokens[i] for i in sampler.shard()]


@pytest.fixture(scope="module")
def two_rank_run(tiny_train_args: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """3 steps on 2 ranks, then resumed on 2 ranks to step 5."""
    tmp = tmp_path_factory.mktemp("ddp")
    work = tmp / "work"
    args = [*tiny_train_args, *EXTRA, "--work-dir", str(work)]
    _torchrun(tmp, tmp, args)
    config = config_from_args(build_parser().parse_intermixed_args(args))
    tokens = [r.token for r in GaussTRDataset(config, config.data.train_split, load_occupancy=False).records]
    return {"tmp": tmp, "work": work, "args": args, "tokens": tokens}


def test_ranks_hold_identical_parameters_after_every_step(two_rank_run: dict) -> None:
    rank0, _ = _read_trace(two_rank_run["tmp"], 0)
    rank1, _ = _read_trace(two_rank_run["tmp"], 1)
    assert [s[0] for s in rank0] == [s[0] for s in rank1] == [1, 2, 3, 4, 5]
    assert [s[3] for s in rank0] == [s[3] for s in rank1]
    assert len({s[3] for s in rank0}) == 5  # and they do train


def test_each_rank_sees_its_own_shard(two_rank_run: dict) -> None:
    tokens = two_rank_run["tokens"]
    assert len(tokens) == 3
    seen = {}
    for rank in (0, 1):
        steps = _read_trace(two_rank_run["tmp"], rank)[0]
        seen[rank] = [s[2] for s in steps]
        assert [s[1] for s in steps] == [0, 0, 1, 1, 2]
        expected = [_expected_tokens(tokens, 2, rank, epoch) for epoch in range(3)]
        assert seen[rank] == expected[0] + expected[1] + expected[2][:1]
    assert set(seen[0][:2]) | set(seen[1][:2]) == set(tokens)  # epoch 0 covers the data set
    assert seen[0] != seen[1]


def test_only_rank_0_writes(two_rank_run: dict) -> None:
    assert _read_trace(two_rank_run["tmp"], 1)[1] == []
    writes = _read_trace(two_rank_run["tmp"], 0)[1]
    assert writes.count("config") == 2 and writes.count("tensorboard") == 2 and "checkpoint" in writes
    state = load_checkpoint(latest_checkpoint(two_rank_run["work"]))["train_state"]
    assert (state["step"], state["epoch"], state["consumed"], state["world_size"]) == (5, 2, 1, 2)


def test_two_rank_checkpoint_resumes_on_one_process(two_rank_run: dict, tmp_path: Path) -> None:
    """At step 5 the 2 ranks consumed 2 samples of the last epoch (2); one process finishes it with
    the third sample of its own order."""
    args = [*two_rank_run["args"], "--work-dir", str(tmp_path)]
    config = config_from_args(build_parser().parse_intermixed_args(args))
    result = train(config, device="cpu", resume=latest_checkpoint(two_rank_run["work"]), show_progress=False)
    assert result.steps == 6 and result.epochs_done == 3 and len(result.losses) == 1
    state = load_checkpoint(latest_checkpoint(tmp_path))["train_state"]
    assert (state["step"], state["epoch"], state["consumed"], state["world_size"]) == (6, 3, 0, 1)
