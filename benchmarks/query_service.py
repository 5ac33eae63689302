"""Round trip of the node's ~/query service from another process, tiny model, one synthetic keyframe.

Set-up: a one-keyframe synthetic world (six 160x90 cameras, patch-8 caches) as a bag with depth
topics, the untrained tiny model (config/tiny.yaml, Gaussian scale multiplier 1 as the tests' tiny
checkpoint) in the real occupancy node (own process, gausstr_ros.tools.replay_session), the bag replayed
once so the node holds a prediction. Untrained features are relevant to every prompt a little, so
every Gaussian is voxelised for each query: a worst case for the query's cost.
Then, from this process (rclpy client), `--calls` calls of each kind, one prompt per call:
  kept:     the same request again (the node keeps answers per prediction);
  cached:   the vocabulary prompt "car" with a new threshold each call: recomputed, no text encoding;
  uncached: a prompt never seen before each call ("object 17", ...): text encoding (the synthetic
            encoder: a hash, cheap) plus the computation.
Prints median / 90th percentile round trip (request sent -> response received) per kind, the CPU
time the node process and this client used per call (from /proc and getrusage: what a call costs
on an otherwise idle machine, where the wall time of this single-threaded path approaches it), and
the ratios of the cached kind's median round trip and CPU time per call to the 50 ms goal (<= 1
meets it).

Usage: python benchmarks/query_service.py [--calls 30]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import rclpy
import torch

from gausstr_core.config import load_config
from gausstr_core.data.synthetic.generate import SynthOptions, generate_dataset
from gausstr_core.data.synthetic.rig import nuscenes_rig
from gausstr_core.model.checkpoint import save_checkpoint
from gausstr_core.model.gausstr import GaussTR
from gausstr_ros.srv import Query
from gausstr_ros.tools import bag_cli
from gausstr_ros.tools.output_recorder import OutputRecorder
from gausstr_ros.tools.replay_session import NodeProcess, replay_bag, spin_until

ROOT = Path(__file__).resolve().parents[1]
GOAL_MS = 50.0
CAMERAS = [c.name for c in nuscenes_rig()]


def prepare(tmp: Path) -> Path:
    """World, bag and untrained tiny checkpoint in tmp; returns the checkpoint."""
    generate_dataset(tmp / "data", SynthOptions(scenes=1, samples_per_scene=1, sweeps=False, patch_size=8,
                                                rig=nuscenes_rig(160, 90)))
    world_config = tmp / "data" / "gausstr_synthetic.yaml"
    bag_cli.main([str(tmp / "bag"), "--config", str(world_config), "--depth", "cache", "--quiet"])
    config = load_config(str(world_config))
    tiny = load_config(str(ROOT / "config" / "tiny.yaml"), ["model.scale_multiplier=1.0"]).model
    torch.manual_seed(0)
    save_checkpoint(tmp / "tiny.pth", GaussTR(tiny), dataclasses.replace(config, model=tiny))
    return tmp / "tiny.pth"


def cpu_ms(pid: int) -> float:
    """CPU time (user + system) used so far by process `pid` and by this process, ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    own = resource.getrusage(resource.RUSAGE_SELF)
    return (int(fields[11]) + int(fields[12])) * 1e3 / ticks + (own.ru_utime + own.ru_stime) * 1e3


def round_trips(node, client, requests: list[Query.Request], pid: int) -> tuple[list[float], float]:
    """ms per request, one at a time (every answer must be OK), and the CPU ms per request of the
    node process `pid` and this one."""
    times, cpu_before = [], cpu_ms(pid)
    for request in requests:
        tic = time.perf_counter()
        future = client.call_async(request)
        if not spin_until(node, future.done, 60):
            raise TimeoutError("~/query did not answer within 60 s")
        times.append((time.perf_counter() - tic) * 1e3)
        response = future.result()
        if response.status != Query.Response.OK:
            raise RuntimeError(f"~/query answered status {response.status}: {response.message}")
    return times, (cpu_ms(pid) - cpu_before) / len(requests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=30, help="calls per kind")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())} on "
          f"{os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        checkpoint = prepare(tmp)
        rclpy.init()
        node = rclpy.create_node("query_benchmark")
        client = node.create_client(Query, "/gausstr_occupancy/query")
        try:
            recorder = OutputRecorder(node)
            with NodeProcess(checkpoint, CAMERAS, tmp / "node.log", depth_source="topic") as proc:
                result = replay_bag(node, recorder, tmp / "bag", CAMERAS, expected_sets=1, depth=True, timeout_s=300)
                if not result.complete or not client.wait_for_service(timeout_sec=30):
                    print(f"the node gave no prediction:\n{proc.log()[-3000:]}", file=sys.stderr)
                    return 1
                n, pid = args.calls, proc.process.pid
                round_trips(node, client, [Query.Request(prompts=["car"])], pid)  # warm-up (answer kept)
                kinds = {
                    "kept": round_trips(node, client, [Query.Request(prompts=["car"]) for _ in range(n)], pid),
                    "cached": round_trips(node, client, [Query.Request(prompts=["car"], threshold=0.5 + i * 1e-3)
                                                         for i in range(n)], pid),
                    "uncached": round_trips(node, client, [Query.Request(prompts=[f"object {i}"])
                                                           for i in range(n)], pid),
                }
        finally:
            node.destroy_node()
            rclpy.shutdown()
    print(f"\n~/query round trip, {n} calls each, one prompt per call (ms):")
    for kind, (times, cpu) in kinds.items():
        p90 = statistics.quantiles(times, n=10)[-1]
        print(f"  {kind:<9} median {statistics.median(times):7.1f}   p90 {p90:7.1f}   CPU per call {cpu:7.1f}")
    times, cpu = kinds["cached"]
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"cached prompt, recomputed: median round trip / {GOAL_MS:.0f} ms goal = "
          f"{statistics.median(times) / GOAL_MS:.2f}, CPU per call / goal = {cpu / GOAL_MS:.2f}; load average {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
