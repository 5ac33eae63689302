"""The end-to-end demo (`make demo`): synthetic world -> CPU training -> bag -> occupancy_node -> metrics.

    python -m gausstr_ros.tools.demo [--out demo_out] [--train-seconds 300] [--play-rate 0.1]

Each step calls the functions behind the console script named (no argv lists), except the node
and the player, which run as their own processes:
1. gausstr-synth: a synthetic nuScenes-format world (train scenes + held-out val scenes, keyframes).
2. gausstr-train: the tiny GaussTR (config/tiny.yaml) on the train scenes for --train-seconds on the
   CPU; the checkpoint is kept as <out>/model.pth and reused by later runs (--retrain to redo it).
3. gausstr-eval on the held-out samples (dumps kept for the pictures).
4. gausstr-bag: the held-out scenes as a ROS 2 bag with per-camera depth topics.
5. occupancy_node (own process) + gausstr-play (own process), the outputs recorded here.
6. Summary: frames in / out, latency per stage, mIoU of the node's published occupancy against the
   synthetic ground truth next to gausstr-eval's; PNG pictures as gausstr-viz draws them.
ROS traffic uses the current ROS_DOMAIN_ID. Everything lands under --out (summary.json, node.log).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import torch

from gausstr_core.atomic_files import write_atomic
from gausstr_core.cli.run_config import run_config
from gausstr_core.cli.viz import draw_sample
from gausstr_core.config import Config, load_config, save_config
from gausstr_core.data.nuscenes import NuScenesReader
from gausstr_core.data.occ3d import load_occ3d, occ3d_path
from gausstr_core.data.synthetic.generate import SynthOptions, generate_dataset
from gausstr_core.evaluation import EvalResult, evaluate
from gausstr_core.metrics import OccupancyMetrics
from gausstr_core.model.checkpoint import checkpoint_config
from gausstr_core.predict import OccupancyPredictor
from gausstr_core.prediction_io import load_prediction
from gausstr_core.resources import resolve_resource
from gausstr_core.vocabulary import Vocabulary
from gausstr_ros.share import share_file
from gausstr_ros.tools.bag_writer import cache_depth_source, camera_frames, write_bag

_TINY_CONFIG = "config/tiny.yaml"  # under share/gausstr_ros (gausstr_ros.share)


@dataclasses.dataclass
class DemoOptions:
    out: Path
    train_seconds: float
    scenes: int
    samples_per_scene: int
    retrain: bool


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gausstr_ros.tools.demo", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="demo_out", help="output folder (world, model, bag, pictures, summary)")
    p.add_argument("--train-seconds", type=float, default=300.0, help="CPU training budget, s (default 300)")
    p.add_argument("--scenes", type=int, default=4, help="synthetic scenes; the last quarter is held out")
    p.add_argument("--samples-per-scene", type=int, default=4, help="keyframes per scene")
    p.add_argument("--play-rate", type=float, default=0.1,
                   help="bag replay speed; slow enough that the node finishes each 2 Hz keyframe set before the "
                        "next (faster input is handled latest-only: stale sets are dropped)")
    p.add_argument("--retrain", action="store_true", help="train again even if <out>/model.pth exists")
    return p


def _step(message: str) -> float:
    print(f"\n== {message}", flush=True)
    return time.perf_counter()


def make_world(options: DemoOptions) -> Config:
    """The synthetic world (generated once) with the tiny model and training settings."""
    root = options.out / "world"
    if not (root / "gausstr_synthetic.yaml").is_file():
        if root.exists():
            shutil.rmtree(root)  # an interrupted earlier run
        tiny = load_config(str(share_file(_TINY_CONFIG)))
        summary = generate_dataset(root, SynthOptions(
            scenes=options.scenes, samples_per_scene=options.samples_per_scene, sweeps=False,
            feature_dim=tiny.model.feature_dim, patch_size=tiny.model.patch_size))
        print(f"world: {summary.samples} samples in {len(summary.scenes)} scenes ({summary.seconds:.0f} s)")
    world = load_config(str(root / "gausstr_synthetic.yaml"))
    tiny = load_config(str(share_file(_TINY_CONFIG)))
    # A budget of minutes: the larger constant learning rate of benchmarks/learn_synthetic.py.
    train = dataclasses.replace(tiny.train, work_dir=str(options.out / "train"), lr=1e-3, warmup_iters=20,
                                epochs=1000, lr_milestones=(1000,))
    data = dataclasses.replace(world.data, num_workers=0)
    return dataclasses.replace(world, model=tiny.model, data=data, train=train)


def train_model(config: Config, options: DemoOptions) -> Path:
    """<out>/model.pth: trained now for train_seconds, or the one cached by an earlier run."""
    model = options.out / "model.pth"
    if model.is_file() and not options.retrain:
        print(f"reusing {model} (--retrain to train again)")
        return model
    from gausstr_core.train.loop import train

    save_config(config, options.out / "demo_config.yaml")
    if options.retrain and Path(config.train.work_dir).exists():
        shutil.rmtree(config.train.work_dir)
    result = train(config, device="cpu", max_seconds=options.train_seconds, show_progress=False)
    if result.last_checkpoint is None:
        raise RuntimeError("training wrote no checkpoint")
    shutil.copyfile(result.last_checkpoint, model)
    losses = result.losses
    print(f"trained {result.steps} steps; loss {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else "trained")
    return model


def run_eval(model: Path, options: DemoOptions) -> EvalResult:
    """gausstr-eval's steps on the held-out split: the checkpoint with the world's data, one dump per sample."""
    out = options.out / "eval"
    config = run_config(checkpoint_config(model), str(options.out / "world" / "gausstr_synthetic.yaml"), None, [])
    predictor = OccupancyPredictor.from_checkpoint(model, "cpu", config=config)
    result = evaluate(predictor, config.data.val_split, dump_dir=out / "dumps", progress=False)
    write_atomic(out / "metrics.json", lambda f: f.write(json.dumps(result.to_dict(), indent=2).encode()))
    print(result.metrics.table())
    return result


def make_bag(config: Config, options: DemoOptions) -> Path:
    """gausstr-bag's steps: the held-out scenes' keyframes with depth topics from the prepared depth cache."""
    data = config.data
    reader = NuScenesReader(data.dataroot, data.version, data.cameras)
    frames = camera_frames(reader, reader.split_scenes(data.val_split), keyframes_only=True)
    summary = write_bag(options.out / "bag", frames, depth=cache_depth_source(data.cache_root, data.depth_kind),
                        overwrite=True, progress=False)
    print(f"wrote {summary.path}: {sum(summary.message_counts.values())} messages")
    return summary.path


def draw_pictures(config: Config, options: DemoOptions) -> Path:
    """gausstr-viz's pictures of the first held-out sample's evaluation dump; returns their folder."""
    dump, meta = load_prediction(sorted((options.out / "eval" / "dumps").glob("*.npz"))[0])
    record = NuScenesReader(config.data.dataroot, config.data.version, config.data.cameras).sample_record(
        meta["token"])
    pictures = options.out / "pictures"
    draw_sample(meta["config"], record, pictures, dump)
    return pictures


def replay_through_node(model: Path, bag: Path, config: Config, options: DemoOptions, rate: float, expected: int):
    """Start the node, play the bag at `rate`, return the recorder and the node log path."""
    import rclpy

    from gausstr_ros.tools.output_recorder import OutputRecorder
    from gausstr_ros.tools.replay_session import NodeProcess, replay_bag, spin_until

    cameras = list(config.data.cameras)
    log_path = options.out / "node.log"
    rclpy.init()
    listener = rclpy.create_node("gausstr_demo_recorder")
    try:
        recorder = OutputRecorder(listener)
        with NodeProcess(model, cameras, log_path, depth_source="topic") as node:
            result = replay_bag(listener, recorder, bag, cameras, expected_sets=expected, depth=True, rate=rate,
                                timeout_s=60 + expected * 30 / rate)
            spin_until(listener, lambda: False, 1.5)  # one more /diagnostics with the final means
            if not result.complete:
                print(f"warning: {recorder.count('occupancy')} of {expected} sets came out; see {log_path}")
            if not node.alive():
                raise RuntimeError(f"the node exited early; see {log_path}")
    finally:
        listener.destroy_node()
        rclpy.shutdown()
    return recorder


def score_node_outputs(recorder, config: Config) -> tuple[OccupancyMetrics, int]:
    """Occ3D metrics of the published occupancy vs the ground truth (camera mask); matched samples."""
    from gausstr_ros.stamps import stamp_to_ns
    from gausstr_ros.tools.output_recorder import occupancy_labels

    vocabulary = Vocabulary.load(resolve_resource(config.inference.vocabulary, "vocabulary file"))
    data = config.data
    reader = NuScenesReader(data.dataroot, data.version, data.cameras)
    by_stamp = {}
    for token in reader.split_samples(data.val_split):
        record = reader.sample_record(token)
        by_stamp[record.cameras[data.cameras[0]].timestamp * 1000] = record
    metrics, matched = OccupancyMetrics(), 0
    for received in recorder.messages["occupancy"]:
        msg = received.msg
        record = by_stamp.get(stamp_to_ns(msg.header.stamp))
        if record is None:
            continue
        if list(msg.class_names) != vocabulary.class_names:
            raise RuntimeError(f"the node published classes {list(msg.class_names)}, not {vocabulary.name!r}'s")
        labels = occupancy_labels(msg)
        truth = load_occ3d(occ3d_path(data.occ_root, record.scene, record.token), shape=labels.shape)
        metrics.update(vocabulary.to_occ3d(labels), truth.semantics, truth.mask_camera)
        matched += 1
    return metrics, matched


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = DemoOptions(Path(args.out).resolve(), args.train_seconds, args.scenes, args.samples_per_scene,
                          args.retrain)
    if options.scenes < 2 or options.samples_per_scene < 1 or options.train_seconds <= 0 or args.play_rate <= 0:
        raise SystemExit("demo: need --scenes >= 2, --samples-per-scene >= 1, --train-seconds > 0, --play-rate > 0")
    options.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    start = time.perf_counter()

    _step("1/6 synthetic world (gausstr-synth)")
    config = make_world(options)
    _step(f"2/6 tiny model on the CPU (gausstr-train, {options.train_seconds:.0f} s budget)")
    model = train_model(config, options)
    _step("3/6 held-out samples (gausstr-eval)")
    evaluation = run_eval(model, options)
    samples = len(evaluation.tokens)
    _step("4/6 held-out scenes -> ROS 2 bag with depth topics (gausstr-bag)")
    bag = make_bag(config, options)
    rate = args.play_rate
    _step(f"5/6 occupancy_node on the bag (gausstr-play at rate {rate:.2f})")
    recorder = replay_through_node(model, bag, config, options, rate, samples)
    _step("6/6 scoring and pictures (gausstr-viz)")
    metrics, matched = score_node_outputs(recorder, config)
    pictures = draw_pictures(config, options)

    eval_metrics = evaluation.metrics.to_dict()
    key = next(k for k in eval_metrics if k.startswith("miou_"))
    node_miou, eval_miou = 100 * metrics.to_dict()[key], 100 * eval_metrics[key]
    values = recorder.diagnostic_values()
    stages = {k.removesuffix(" ms (mean)"): float(v) for k, v in values.items() if k.endswith(" ms (mean)")}
    latencies = [r.msg.data for r in recorder.messages["debug/pipeline_latency_ms"]]
    summary = {
        "frames_in": samples, "frames_out": recorder.count("occupancy"), "frames_scored": matched,
        "play_rate": rate, "stage_ms_mean": stages,
        "pipeline_latency_ms_mean": sum(latencies) / len(latencies) if latencies else None,
        f"node_{key}": node_miou, f"eval_{key}": eval_miou, "miou_difference": abs(node_miou - eval_miou),
        "pictures": sorted(str(p) for p in pictures.glob("*.png")), "seconds": time.perf_counter() - start,
    }
    (options.out / "summary.json").write_text(json.dumps(summary, indent=2))

    print(f"\nframes in {samples}, frames out {summary['frames_out']} ({matched} scored)")
    print("node latency per stage (ms, mean): " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()))
    if latencies:
        print(f"input-to-output latency: {summary['pipeline_latency_ms_mean']:.0f} ms (mean)")
    print(f"mIoU ({key[5:]} classes) of the node's published occupancy: {node_miou:.2f}; "
          f"gausstr-eval on the same samples: {eval_miou:.2f} (difference {summary['miou_difference']:.2f})")
    print(f"pictures: {pictures}")
    print(f"summary: {options.out / 'summary.json'}; node log: {options.out / 'node.log'}; "
          f"total {summary['seconds']:.0f} s")
    ok = matched == samples and summary["miou_difference"] <= 1.0
    if not ok:
        print("demo: the node's output does not match gausstr-eval (see above)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
