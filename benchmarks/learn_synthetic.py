"""Learning on the synthetic world: train the tiny GaussTR on CPU for S seconds, score a held-out split.

World (generated into --data when that folder is absent): 12 scenes x 4 keyframes of the synthetic
street (gausstr-synth, seed 0, six nuScenes cameras, 200x112 originals, 112x200 caches with patch-8
features); its split puts the last 3 scenes in `val` (held out: never trained on).
Training: config/learn_synthetic.yaml (the tiny network) with the world's data section, for S
seconds of `train()` (max_seconds), one process, CPU.
Held-out scores, on every `val` keyframe:
  depth abs rel: mean |d - d*| / d* of the rendered depth d of the last decoder layer (accumulated,
    as trained; deterministic reference points) against the true depth d* (synthetic_depth_gt
    cache) over the pixels with 0 < d* < train.far_depth, per camera image at the input size;
  IoU / mIoU (17 and 15 classes): gausstr_core.cli.eval.evaluate (zero-shot text similarity through
    OccupancyPredictor, Occ3D labels inside mask_camera), with the same config and defaults as
    `gausstr-eval CHECKPOINT --data DIR`, so that command prints the same mIoU.
Prints the loss curve (every ~10 % of the steps) and the ratio of the last to the first 10 steps'
mean loss. --ablation: the paper's loss ablation, with the S seconds split three ways (S/3 each):
feature loss only, depth loss only, both (loss weights set to 0), and a table.

Usage: python benchmarks/learn_synthetic.py --seconds 900 --data data/learn_synthetic [--out DIR]
       [--ablation] [train overrides, e.g. train.lr=0.0005]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from gausstr_core.cli.eval import evaluate
from gausstr_core.cli.run_config import checkpoint_config, run_config
from gausstr_core.config import Config, apply_overrides, config_from_dict, load_config
from gausstr_core.data import GaussTRDataset, collate_samples
from gausstr_core.data.synthetic.generate import SynthOptions, generate_dataset
from gausstr_core.predict import OccupancyPredictor
from gausstr_core.render import render_gaussians
from gausstr_core.train.loop import train

REPO = Path(__file__).resolve().parents[1]
WORLD = SynthOptions(scenes=12, samples_per_scene=4, seed=0, image_size=(200, 112), input_size=(112, 200),
                     sweeps=False, feature_dim=64, patch_size=8)
VARIANTS = {  # name: loss-weight overrides
    "both": (),
    "feature only": ("train.depth_loss_weight=0.0",),
    "depth only": ("train.feature_loss_weight=0.0",),
}


def ensure_world(data_dir: Path) -> Path:
    """The world's gausstr_synthetic.yaml, generating the world first when `data_dir` does not exist."""
    if not data_dir.exists():
        tic = time.perf_counter()
        summary = generate_dataset(data_dir, WORLD)
        print(f"generated {summary.samples} samples in {len(summary.scenes)} scenes at {data_dir} "
              f"in {time.perf_counter() - tic:.0f} s")
    world_config = data_dir / "gausstr_synthetic.yaml"
    if not world_config.is_file():
        raise FileNotFoundError(f"--data {data_dir} exists but holds no gausstr_synthetic.yaml (a gausstr-synth tree)")
    return world_config


def training_config(config_path: str, world_config: Path, work_dir: Path, overrides: list[str]) -> Config:
    """The training YAML with the world's data / grid / inference sections, then the overrides."""
    config = run_config(load_config(config_path), str(world_config), None, [])
    own = ["data.num_workers=0", f"train.work_dir={work_dir}"]  # the world's YAML asks for 2 workers
    return config_from_dict(apply_overrides(config.to_dict(), [*own, *overrides]))


def held_out_scores(checkpoint: Path, data_dir: Path) -> dict[str, float]:
    """Depth abs rel and the Occ3D metrics of `checkpoint` on the world's val split."""
    config = run_config(checkpoint_config(checkpoint), None, str(data_dir), [])  # as gausstr-eval --data
    predictor = OccupancyPredictor.from_checkpoint(checkpoint, "cpu", config=config)
    result = evaluate(predictor, config.data.val_split, progress=False)
    metrics = result.metrics
    return {
        "depth_abs_rel": depth_abs_rel(predictor.model, config),
        "iou": metrics.geometry_iou(),
        "miou17": metrics.miou(17),
        "miou15": metrics.miou(15),
        "samples": len(result.tokens),
    }


@torch.no_grad()
def depth_abs_rel(model: torch.nn.Module, config: Config) -> float:
    """Mean over val camera images of the abs rel of the rendered depth (module docstring)."""
    split = config.data.val_split
    inputs = GaussTRDataset(config, split, load_occupancy=False)
    truth_config = dataclasses.replace(config, data=dataclasses.replace(config.data, depth_kind="synthetic_depth_gt"))
    truths = GaussTRDataset(truth_config, split, load_occupancy=False)
    model.eval()
    errors = []
    for index in range(len(inputs)):
        batch = collate_samples([inputs[index]])
        views = batch.features.shape[1]
        refs = model.sample_reference_points(1, views, deterministic=True)
        gaussians = model(batch.features, batch.depths, batch.intrinsics, batch.cam2ego, batch.img_aug,
                          ref_points=refs)[-1]
        rendered = render_gaussians(
            means=gaussians.means, quats=gaussians.quats, scales=gaussians.scales, opacities=gaussians.opacities,
            colors=gaussians.opacities[..., None], cam2ego=batch.cam2ego, intrinsics=batch.intrinsics,
            img_aug=batch.img_aug, image_size=tuple(batch.depths.shape[-2:]),
            near=config.train.render_near, far=config.train.render_far,
        ).depth[0]
        truth = truths[index].depths
        for d, t in zip(rendered, truth):
            valid = (t > 0) & (t < config.train.far_depth)
            if valid.any():
                errors.append(float(((d[valid] - t[valid]).abs() / t[valid]).mean()))
    return statistics.fmean(errors)


def run_variant(
    name: str, args: argparse.Namespace, world_config: Path, seconds: float, extra: tuple[str, ...]
) -> dict:
    work_dir = Path(args.out) / name.replace(" ", "_")
    config = training_config(args.config, world_config, work_dir, [*args.overrides, *extra])
    print(f"\n== {name}: {seconds:.0f} s of training, work dir {work_dir}")
    tic = time.perf_counter()
    result = train(config, device="cpu", max_seconds=seconds, show_progress=False)
    train_s = time.perf_counter() - tic
    losses = result.losses
    marks = sorted({min(len(losses) - 1, round(i * (len(losses) - 1) / 10)) for i in range(11)})
    print("loss curve (step: total loss): " + ", ".join(f"{i + 1}: {losses[i]:.2f}" for i in marks))
    k = min(10, max(1, len(losses) // 2))
    ratio = statistics.fmean(losses[-k:]) / statistics.fmean(losses[:k])
    print(f"{result.steps} steps in {train_s:.0f} s ({train_s / max(result.steps, 1):.2f} s/step); "
          f"mean loss of the last {k} / first {k} steps = {ratio:.3f}")
    tic = time.perf_counter()
    scores = held_out_scores(result.last_checkpoint, Path(args.data))
    print(f"held-out ({scores['samples']} samples, {time.perf_counter() - tic:.0f} s): "
          f"depth abs rel {scores['depth_abs_rel']:.3f}, IoU {100 * scores['iou']:.2f}, "
          f"mIoU17 {100 * scores['miou17']:.2f}, mIoU15 {100 * scores['miou15']:.2f}")
    print(f"checkpoint: {result.last_checkpoint}  (gausstr-eval {result.last_checkpoint} --data {args.data})")
    return {"steps": result.steps, "loss_ratio": ratio, **scores}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="dotted training-config overrides")
    parser.add_argument("--seconds", type=float, required=True, help="training budget in seconds")
    parser.add_argument("--data", required=True, help="synthetic world folder (generated when absent)")
    parser.add_argument("--out", default="work_dirs/learn_synthetic", help="work dirs of the runs")
    parser.add_argument("--config", default=str(REPO / "config" / "learn_synthetic.yaml"), help="training YAML")
    parser.add_argument("--ablation", action="store_true", help="feature only / depth only / both, S/3 each")
    args = parser.parse_intermixed_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")
    world_config = ensure_world(Path(args.data))
    if not args.ablation:
        run_variant("both", args, world_config, args.seconds, ())
        return 0
    rows = {name: run_variant(name, args, world_config, args.seconds / 3, extra) for name, extra in VARIANTS.items()}
    print(f"\nablation, {args.seconds / 3:.0f} s each; load average now "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"{'losses':<14}{'steps':>7}{'loss ratio':>12}{'depth absrel':>14}{'IoU':>8}{'mIoU17':>8}{'mIoU15':>8}")
    for name, r in rows.items():
        print(f"{name:<14}{r['steps']:>7}{r['loss_ratio']:>12.3f}{r['depth_abs_rel']:>14.3f}"
              f"{100 * r['iou']:>8.2f}{100 * r['miou17']:>8.2f}{100 * r['miou15']:>8.2f}")
    return 0 if all(math.isfinite(r["miou17"]) for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
