"""Learning on the synthetic world: train the tiny GaussTR on CPU for S seconds, score a held-out split.

World (generated into --data when that folder is absent): 13 scenes x 4 keyframes of the synthetic
street (gausstr-synth, seed 0, six nuScenes cameras, 200x112 originals, 112x200 caches with patch-8
features, camera mask by --camera-mask, default Occ3D's ray casting); its splits: train scenes 0-8,
`val` scenes 9-11 (held out: never trained on, scored), `val_select` scene 12 (validation during
training, best.pt). An existing --data world is used only when its meta records the asked mask rule.
Training: config/learn_synthetic.yaml (the tiny network) with the world's data section, for S
seconds of `train()` (max_seconds), one process, CPU.
Held-out scores, on every `val` keyframe:
  depth abs rel: mean |d - d*| / d* of the rendered depth d of the last decoder layer (accumulated,
    as trained; deterministic reference points) against the true depth d* (synthetic_depth_gt
    cache) over the pixels with 0 < d* < train.far_depth, per camera image at the input size;
  IoU / mIoU (17 and 15 classes): gausstr_core.evaluation.evaluate (zero-shot text similarity through
    OccupancyPredictor, Occ3D labels inside mask_camera), with the same config and defaults as
    `gausstr-eval CHECKPOINT --data DIR`, so that command prints the same mIoU. mIoU15 (without
    others and other_flat, which the vocabulary never predicts) is the headline, mIoU17 beside it;
    density IoU: occupied = density above inference.density_threshold, labels ignored.
  --oracle FILE (benchmarks/oracle_synthetic.py --json on the same world): each score beside the
    oracle's for the same Gaussians per view, and their ratio (`gausstr-eval --oracle FILE` too).
  --depth-head (model.depth_head: the model predicts its own depth, trained from the depth cache, with
    the DEPTH_HEAD overrides: the head's loss weighted up, most steps' Gaussians placed on the
    head's depth, the learning rate annealed to 0 over the last half; docs/learning.md):
    the head's depth abs rel against synthetic_depth_gt (same pixels), and IoU / mIoU15 of the same
    checkpoint fed the head's depth (`gausstr-eval --depth model`) over those fed the provider's
    depth (the synthetic_depth cache, `--depth cache`), as ratios.
Prints the loss curve (every ~10 % of the steps) and the ratio of the last to the first 10 steps'
mean loss. --ablation: the paper's loss ablation, with the S seconds split three ways (S/3 each):
feature loss only, depth loss only, both (loss weights set to 0), and a table.

Usage: python benchmarks/learn_synthetic.py --seconds 900 --data data/learn_synthetic [--out DIR]
       [--ablation] [--depth-head] [--oracle FILE] [--camera-mask RULE] [train overrides, e.g. train.lr=0.0005]
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

from gausstr_core.cli.run_config import run_config
from gausstr_core.config import Config, apply_overrides, config_from_dict, load_config
from gausstr_core.data import GaussTRDataset, collate_samples
from gausstr_core.data.synthetic.generate import SynthOptions, generate_dataset, world_camera_mask
from gausstr_core.data.synthetic.occupancy import CAMERA_MASK_RULES
from gausstr_core.evaluation import evaluate
from gausstr_core.metrics import oracle_ceiling, oracle_fractions
from gausstr_core.model.checkpoint import checkpoint_config
from gausstr_core.predict import OccupancyPredictor
from gausstr_core.render import render_gaussians
from gausstr_core.train.loop import train

REPO = Path(__file__).resolve().parents[1]
WORLD = SynthOptions(scenes=13, samples_per_scene=4, seed=0, image_size=(200, 112), input_size=(112, 200),
                     sweeps=False, feature_dim=64, patch_size=8)
# --depth-head (docs/learning.md, "The depth head"): joint training for the whole budget (no head-only phase),
# the head's loss x 3 (through it the neck learns depth too), 80 % of the steps decoding from the head's
# own depth (train.head_depth_mix), and the learning rate falling to 0 over the last half (train.lr_anneal)
DEPTH_HEAD = ("model.depth_head=true", "train.depth_head_weight=3.0", "train.head_depth_mix=0.8", "train.lr_anneal=0.5")
VARIANTS = {  # name: loss-weight overrides
    "both": (),
    "feature only": ("train.depth_loss_weight=0.0",),
    "depth only": ("train.feature_loss_weight=0.0",),
}


def ensure_world(data_dir: Path, camera_mask: str = WORLD.camera_mask) -> Path:
    """The world's gausstr_synthetic.yaml, generating the world first (mask rule `camera_mask`) when
    `data_dir` does not exist; ValueError when an existing world's mask rule is another one."""
    if not data_dir.exists():
        tic = time.perf_counter()
        summary = generate_dataset(data_dir, dataclasses.replace(WORLD, camera_mask=camera_mask))
        print(f"generated {summary.samples} samples in {len(summary.scenes)} scenes at {data_dir} "
              f"in {time.perf_counter() - tic:.0f} s")
    world_config = data_dir / "gausstr_synthetic.yaml"
    if not world_config.is_file():
        raise FileNotFoundError(f"--data {data_dir} exists but holds no gausstr_synthetic.yaml (a gausstr-synth tree)")
    rule = world_camera_mask(data_dir)
    if rule != camera_mask:
        raise ValueError(f"--data {data_dir}: its mask_camera was made by the {rule!r} rule, not the asked "
                         f"{camera_mask!r}; choose another --data folder (generated when absent) or --camera-mask")
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
    scores = {"depth_abs_rel": depth_abs_rel(predictor.model, config), **result.scores(), "samples": len(result.tokens),
              "queries": predictor.config.model.num_queries}
    if predictor.has_depth_head:
        predictor.model_depth = True
        head = evaluate(predictor, config.data.val_split, cached_depth=False, progress=False).metrics
        scores.update(head_abs_rel=depth_abs_rel(predictor.model, config, "head"), head_iou=head.geometry_iou(),
                      head_miou15=head.miou(15))
    return scores


@torch.no_grad()
def depth_abs_rel(model: torch.nn.Module, config: Config, source: str = "rendered") -> float:
    """Mean over val camera images of the abs rel of the rendered depth, or with source 'head' of the
    model's depth head (module docstring)."""
    split = config.data.val_split
    inputs = GaussTRDataset(config, split, load_occupancy=False)
    truth_config = dataclasses.replace(config, data=dataclasses.replace(config.data, depth_kind="synthetic_depth_gt"))
    truths = GaussTRDataset(truth_config, split, load_occupancy=False)
    model.eval()
    errors = []
    for index in range(len(inputs)):
        batch = collate_samples([inputs[index]])
        truth = truths[index].depths
        if source == "head":
            cameras = (batch.intrinsics, batch.cam2ego, batch.original_to_input)
            predicted = model.predict_depth(model.encode(batch.features), batch.images, *cameras)[0]
            errors += abs_rel_per_image(predicted, truth, config.train.far_depth)
            continue
        views = batch.features.shape[1]
        refs = model.sample_reference_points(1, views, deterministic=True)
        gaussians = model(batch.features, batch.depths, batch.intrinsics, batch.cam2ego, batch.original_to_input,
                          ref_points=refs)[-1]
        rendered = render_gaussians(
            means=gaussians.means, quats=gaussians.quats, scales=gaussians.scales, opacities=gaussians.opacities,
            colors=gaussians.opacities[..., None], cam2ego=batch.cam2ego, intrinsics=batch.intrinsics,
            original_to_input=batch.original_to_input, image_size=tuple(batch.depths.shape[-2:]),
            near=config.train.render_near, far=config.train.render_far,
        ).depth[0]
        errors += abs_rel_per_image(rendered, truth, config.train.far_depth)
    return statistics.fmean(errors)


def abs_rel_per_image(predicted: torch.Tensor, truth: torch.Tensor, far_depth: float) -> list[float]:
    """Mean |d - d*| / d* of each of the (N, H, W) maps over its pixels with 0 < d* < far_depth."""
    errors = []
    for d, t in zip(predicted, truth):
        valid = (t > 0) & (t < far_depth)
        if valid.any():
            errors.append(float(((d[valid] - t[valid]).abs() / t[valid]).mean()))
    return errors


def run_variant(
    name: str, args: argparse.Namespace, world_config: Path, seconds: float, extra: tuple[str, ...]
) -> dict:
    work_dir = Path(args.out) / name.replace(" ", "_")
    config = training_config(args.config, world_config, work_dir, [*args.overrides, *extra])
    print(f"\n== {name}: {seconds:.0f} s of training, work dir {work_dir}")
    tic = time.perf_counter()
    result = train(config, device="cpu", max_seconds=seconds, show_progress=False)
    train_s = time.perf_counter() - tic
    phase = len(result.losses) if result.head_phase_start is None else result.head_phase_start
    losses = result.losses[:phase]
    print_curve("loss curve (step: total loss)", losses)
    k = min(10, max(1, len(losses) // 2))
    ratio = statistics.fmean(losses[-k:]) / statistics.fmean(losses[:k]) if losses else math.nan
    print(f"{result.steps} steps in {train_s:.0f} s ({train_s / max(result.steps, 1):.2f} s/step); "
          f"mean loss of the last {k} / first {k} steps = {ratio:.3f}")
    if result.head_phase_start is not None:
        head_steps = result.steps - phase
        print(f"of which {phase} full steps and {head_steps} depth-head-phase steps (train.depth_head_phase "
              f"{config.train.depth_head_phase}: the last ~{config.train.depth_head_phase * seconds:.0f} s)")
        print_curve("depth-head phase loss curve (step: head loss)", result.losses[phase:], first=phase)
    tic = time.perf_counter()
    scores = held_out_scores(result.last_checkpoint, Path(args.data))
    print(f"held-out ({scores['samples']} samples, {time.perf_counter() - tic:.0f} s): "
          f"depth abs rel {scores['depth_abs_rel']:.3f}, IoU {100 * scores['iou']:.2f}, "
          f"mIoU15 {100 * scores['miou15']:.2f} (headline), mIoU17 {100 * scores['miou17']:.2f}, "
          f"density IoU {100 * scores['density_iou']:.2f}")
    if args.oracle:
        ceiling = oracle_ceiling(args.oracle, scores["queries"], args.camera_mask)
        print(f"against the oracle ({scores['queries']} Gaussians per view, {args.oracle}):\n"
              + oracle_fractions(scores, ceiling))
    if "head_abs_rel" in scores:
        iou_ratio, miou_ratio = (scores[f"head_{k}"] / scores[k] if scores[k] > 0 else math.nan
                                 for k in ("iou", "miou15"))
        print(f"depth head: abs rel {scores['head_abs_rel']:.3f} (target <= 0.15); with the head's depth IoU "
              f"{100 * scores['head_iou']:.2f}, mIoU15 {100 * scores['head_miou15']:.2f}; with the provider's "
              f"depth IoU {100 * scores['iou']:.2f}, mIoU15 {100 * scores['miou15']:.2f}; ratio head / provider: "
              f"IoU {iou_ratio:.3f}, mIoU15 {miou_ratio:.3f} (target >= 0.9)")
    oracle = f" --oracle {args.oracle}" if args.oracle else ""
    print(f"checkpoint: {result.last_checkpoint}  (gausstr-eval {result.last_checkpoint} --data {args.data}{oracle})")
    best = result.last_checkpoint.with_name("best.pt")
    if best.is_file():
        print(f"best checkpoint by validation on {config.train.val_split or config.data.val_split}: {best}")
    return {"steps": result.steps, "loss_ratio": ratio, **scores}


def print_curve(title: str, losses: list[float], first: int = 0) -> None:
    """One line: the losses at every ~10 % of the steps (step numbers from first + 1)."""
    marks = sorted({min(len(losses) - 1, round(i * (len(losses) - 1) / 10)) for i in range(11)}) if losses else []
    print(f"{title}: " + ", ".join(f"{first + i + 1}: {losses[i]:.2f}" for i in marks))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="dotted training-config overrides")
    parser.add_argument("--seconds", type=float, required=True, help="training budget in seconds")
    parser.add_argument("--data", required=True, help="synthetic world folder (generated when absent)")
    parser.add_argument("--out", default="work_dirs/learn_synthetic", help="work dirs of the runs")
    parser.add_argument("--config", default=str(REPO / "config" / "learn_synthetic.yaml"), help="training YAML")
    parser.add_argument("--ablation", action="store_true", help="feature only / depth only / both, S/3 each")
    parser.add_argument("--camera-mask", choices=CAMERA_MASK_RULES, default=WORLD.camera_mask,
                        help="mask_camera rule of the world (default: Occ3D's ray casting)")
    parser.add_argument("--oracle", help="oracle file of this world (benchmarks/oracle_synthetic.py --json): print "
                        "the held-out scores as fractions of its ceiling")
    parser.add_argument("--depth-head", action="store_true",
                        help="train the depth head too (model.depth_head) and score the model fed its own depth")
    args = parser.parse_intermixed_args(argv)
    if args.depth_head:  # before the command line's overrides, which may change them
        args.overrides[:0] = list(DEPTH_HEAD)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")
    if args.oracle and not Path(args.oracle).is_file():
        parser.error(f"--oracle {args.oracle}: file not found (write it with benchmarks/oracle_synthetic.py --json)")
    try:
        world_config = ensure_world(Path(args.data), args.camera_mask)
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))
    if not args.ablation:
        run_variant("both", args, world_config, args.seconds, ())
        return 0
    rows = {name: run_variant(name, args, world_config, args.seconds / 3, extra) for name, extra in VARIANTS.items()}
    print(f"\nablation, {args.seconds / 3:.0f} s each; load average now "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"{'losses':<14}{'steps':>7}{'loss ratio':>12}{'depth absrel':>14}{'IoU':>8}{'density IoU':>13}"
          f"{'mIoU15':>8}{'mIoU17':>8}")
    for name, r in rows.items():
        print(f"{name:<14}{r['steps']:>7}{r['loss_ratio']:>12.3f}{r['depth_abs_rel']:>14.3f}"
              f"{100 * r['iou']:>8.2f}{100 * r['density_iou']:>13.2f}{100 * r['miou15']:>8.2f}"
              f"{100 * r['miou17']:>8.2f}")
    return 0 if all(math.isfinite(r["miou17"]) for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
