"""GaussTR model benchmark: parameter count, forward latency, peak memory, deformable attention.

    python benchmarks/model.py          # < 60 s on a 2-core CPU
    python benchmarks/model.py --full   # more repeats, batch 2 training step

Prints measured numbers only. The parameter count of the full Talk2DINO config is printed next to
the count in the authors' key/shape fixture (test/fixtures/gausstr_talk2dino_keys.tsv). Forward
latency uses precomputed features (6 views x 768 x 36 x 64, the DINOv2 tokens of a 504x896 input)
on CPU, and on CUDA with bf16 autocast when a GPU is present; "decoder + heads" is the full forward
minus the neck (timed inside the same passes). The decoder's deformable attention (sample-first
evaluation) is timed against the textbook per-level loop on the same inputs, in one run, and
their ratio printed.
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

from gausstr_core.config import load_config
from gausstr_core.model import GaussTR
from gausstr_core.model.deform_attn import MultiScaleDeformableAttention, reference_ms_deform_attn

ROOT = Path(__file__).resolve().parents[1]
VIEWS = 6


def fixture_parameter_count(variant: str) -> tuple[int, int]:
    """(GaussTR, backbone) parameter counts summed from the authors' key/shape fixture."""
    gausstr = backbone = 0
    for line in (ROOT / f"test/fixtures/gausstr_{variant}_keys.tsv").read_text().splitlines():
        if line.startswith("#") or not line:
            continue
        key, shape, kind = line.split("\t")
        if kind == "param":
            n = math.prod(int(s) for s in shape.split(","))
            if key.startswith("backbone."):
                backbone += n
            else:
                gausstr += n
    return gausstr, backbone


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], repeats: int, device: torch.device, warmup: bool = True) -> list[float]:
    """Wall times (s) of `repeats` calls (after one warm-up call if `warmup`)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


class NeckTimer:
    """Times the neck inside full forward passes (forward hooks), so one pass gives both numbers."""

    def __init__(self, model: GaussTR, device: torch.device) -> None:
        self.times: list[float] = []
        self._start = 0.0

        def before(*_) -> None:
            sync(device)
            self._start = time.perf_counter()

        def after(*_) -> None:
            sync(device)
            self.times.append(time.perf_counter() - self._start)

        model.neck.register_forward_pre_hook(before)
        model.neck.register_forward_hook(after)


def inputs(cfg, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    h, w = cfg.data.input_size
    fh, fw = h // cfg.model.patch_size, w // cfg.model.patch_size
    k = torch.tensor([[1266.4 * 0.56, 0, 816.3 * 0.56], [0, 1266.4 * 0.56, 491.5 * 0.56], [0, 0, 1]])
    return dict(
        features=torch.randn(batch, VIEWS, cfg.model.feature_dim, fh, fw, device=device),
        depths=torch.rand(batch, VIEWS, h, w, device=device) * 50 + 1,
        images=torch.rand(batch, VIEWS, 3, h, w, device=device),
        intrinsics=k.expand(batch, VIEWS, 3, 3).to(device),
        cam2ego=torch.eye(4, device=device).expand(batch, VIEWS, 4, 4),
        original_to_input=torch.eye(3, device=device).expand(batch, VIEWS, 3, 3),
    )


def bench_forward(cfg, device: torch.device, repeats: int, warmup: bool, train_step: bool) -> None:
    model = GaussTR(cfg.model).to(device).eval()
    neck = NeckTimer(model, device)
    x = inputs(cfg, 1, device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    label = f"{device.type}{' bf16 autocast' if device.type == 'cuda' else ''}"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad(), autocast:
        full = timed(lambda: model(**x), repeats, device, warmup)
    neck_times = neck.times[-repeats:]
    rest = statistics.median(f - n for f, n in zip(full, neck_times))
    print(f"[{label}] forward, 1 x {VIEWS} views, {VIEWS * cfg.model.num_queries} Gaussians: "
          f"median {statistics.median(full) * 1e3:.1f} ms (min {min(full) * 1e3:.1f}, {repeats} runs"
          f"{'' if warmup else ', no warm-up'}); neck {statistics.median(neck_times) * 1e3:.1f} ms, "
          f"decoder + heads {rest * 1e3:.1f} ms")
    if device.type == "cuda":
        print(f"[{label}] peak GPU memory (forward): {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    if train_step:
        model.train()
        xb = inputs(cfg, 2, device)

        def step() -> None:
            with autocast:
                loss = sum(g.means.square().mean() + g.features.square().mean() for g in model(**xb))
            loss.backward()
            model.zero_grad(set_to_none=True)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = timed(step, max(1, repeats // 2), device)
        median = statistics.median(times) * 1e3
        print(f"[{label}] training forward + backward, batch 2 x {VIEWS} views: median {median:.1f} ms")
        if device.type == "cuda":
            print(f"[{label}] peak GPU memory (training step): {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


def bench_deform_attn(cfg, device: torch.device, repeats: int) -> None:
    m = cfg.model
    attn = MultiScaleDeformableAttention(m.embed_dims, m.num_heads, m.num_levels, m.num_points).to(device)
    with torch.no_grad():
        attn.sampling_offsets.weight.normal_(0, 0.02)
        attn.attention_weights.weight.normal_(0, 0.02)
    h, w = (s // m.patch_size for s in cfg.data.input_size)
    shapes = [(h * 4, w * 4), (h * 2, w * 2), (h, w), (h // 2, w // 2)]
    maps = [torch.randn(VIEWS, m.embed_dims, a, b, device=device).contiguous(memory_format=torch.channels_last)
            for a, b in shapes]
    query = torch.randn(VIEWS, m.num_queries, m.embed_dims, device=device)
    ref = torch.rand(VIEWS, m.num_queries, 2, device=device)
    with torch.no_grad():
        error = (attn(query, ref, maps) - reference_ms_deform_attn(attn, query, ref, maps)).abs().max().item()
        ours = statistics.median(timed(lambda: attn(query, ref, maps), repeats, device))
        naive = statistics.median(timed(lambda: reference_ms_deform_attn(attn, query, ref, maps), repeats, device))
    print(f"[{device.type}] deformable attention, {VIEWS} views x {m.num_queries} queries, levels {shapes}: "
          f"ours {ours * 1e3:.1f} ms, naive per-level loop {naive * 1e3:.1f} ms, speed-up x{naive / ours:.2f} "
          f"(max abs difference {error:.1e})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="more repeats and a batch-2 training step")
    parser.add_argument("--config", default=str(ROOT / "config/gausstr_talk2dino.yaml"))
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (default 1: steady numbers on a shared machine; 0 = torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    torch.manual_seed(0)
    cfg = load_config(args.config)
    ours = sum(p.numel() for p in GaussTR(cfg.model).parameters())
    fixture, backbone = fixture_parameter_count(cfg.model.variant)
    print(f"parameters ({Path(args.config).name}): ours {ours:,}; authors' fixture {fixture:,} "
          f"(+ {backbone:,} frozen backbone) -> {'match' if ours == fixture else 'MISMATCH'}")
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        fast = device.type == "cuda"
        repeats = (20 if fast else 3) if args.full else (10 if fast else 1)
        bench_forward(cfg, device, repeats, warmup=fast or args.full, train_step=args.full)
        bench_deform_attn(cfg, device, repeats if fast else (5 if args.full else 2))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak host memory (process max RSS): {rss:.0f} MiB; total time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
