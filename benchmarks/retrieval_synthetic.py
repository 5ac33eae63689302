"""Open-vocabulary retrieval on the synthetic world: average precision of voxel relevance, beside mIoU.

For every `val` keyframe of the world (benchmarks/learn_synthetic.py's, generated into --data
when absent) and each of two Gaussian sources:
  trained: a checkpoint (--checkpoint, e.g. one written by learn_synthetic.py; or --train-seconds S
    trains config/learn_synthetic.yaml on the world for S seconds first), predicted as gausstr-eval
    does (decoded JPEGs, the world's depth cache);
  oracle: benchmarks/oracle_synthetic.py's Gaussians fitted to the ground truth (its OracleHead and
    class features, default knobs, --oracle-queries per view), through OccupancyPredictor.
Queries: the Occ3D class names (underscores as spaces, e.g. "traffic cone") of the 15 classes the
vocabulary maps, each through OccupancyPredictor.query (gausstr_core.query, docs/queries.md).
AP per class: the voxels inside mask_camera of all keyframes pooled, ranked by relevance, positives
the class's ground-truth voxels (step-wise precision-recall integral, as scikit-learn's
average_precision_score); classes absent from every keyframe are skipped; mAP = their mean.
Absent concepts ("giraffe", "fire hydrant"): the highest relevance anywhere in any keyframe and the
number of voxels and clusters above the default threshold (must be 0).
Also printed: IoU, mIoU17 and mIoU15 of the same predictions (Occ3D labels inside mask_camera).

Usage: python benchmarks/retrieval_synthetic.py --data data/learn_synthetic --checkpoint CKPT [--limit N]
       python benchmarks/retrieval_synthetic.py --data data/learn_synthetic --train-seconds 300
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from benchmarks.learn_synthetic import REPO, WORLD, ensure_world, training_config
from benchmarks.oracle_synthetic import OracleHead, OracleKnobs, class_features, oracle_config
from gausstr_core.cli.run_config import run_config
from gausstr_core.data import GaussTRDataset
from gausstr_core.data.nuscenes import NuScenesReader
from gausstr_core.data.occ3d import FREE_ID, OCC3D_CLASSES, load_occ3d, occ3d_path
from gausstr_core.data.synthetic.occupancy import CAMERA_MASK_RULES
from gausstr_core.metrics import OccupancyMetrics
from gausstr_core.model.checkpoint import checkpoint_config
from gausstr_core.predict import OccupancyPredictor, Prediction, Views
from gausstr_core.prediction_io import load_sample_views
from gausstr_core.query import DEFAULT_THRESHOLD
from gausstr_core.retrieval import average_precision
from gausstr_core.train.loop import train

ABSENT = ("giraffe", "fire hydrant")


class RetrievalScores:
    """Accumulates, over keyframes, each class query's masked relevance, the absent prompts' maxima
    and the Occ3D confusion matrix of the labels."""

    def __init__(self, classes: dict[int, str]) -> None:
        self.classes = classes  # Occ3D id -> prompt
        self.relevance: dict[int, list[np.ndarray]] = {c: [] for c in classes}
        self.truth: list[np.ndarray] = []
        self.absent = {p: {"max_relevance": 0.0, "voxels_above": 0, "clusters": 0} for p in ABSENT}
        self.metrics = OccupancyMetrics()
        self.query_ms: list[float] = []

    def add(self, predictor: OccupancyPredictor, prediction: Prediction, semantics: np.ndarray,
            mask: np.ndarray) -> None:
        prompts = [*self.classes.values(), *ABSENT]
        tic = time.perf_counter()
        answers = dict(zip(prompts, predictor.query(prediction, prompts)))
        self.query_ms.append((time.perf_counter() - tic) * 1e3 / len(prompts))
        for cls, prompt in self.classes.items():
            self.relevance[cls].append(answers[prompt].relevance.cpu().numpy()[mask].astype(np.float32))
        self.truth.append(semantics[mask])
        for prompt in ABSENT:
            answer, entry = answers[prompt], self.absent[prompt]
            entry["max_relevance"] = max(entry["max_relevance"], answer.max_relevance)
            entry["voxels_above"] += int((answer.relevance > DEFAULT_THRESHOLD).sum())
            entry["clusters"] += len(answer.clusters)
        self.metrics.update(prediction.labels_occ3d().cpu(), semantics, mask)

    def summary(self) -> dict:
        truth = np.concatenate(self.truth)
        ap = {}
        for cls, prompt in self.classes.items():
            positives = truth == cls
            if positives.any():
                ap[prompt] = average_precision(np.concatenate(self.relevance[cls]), positives)
        return {"map": float(np.mean(list(ap.values()))) if ap else float("nan"), "ap": ap, "absent": self.absent,
                "iou": self.metrics.geometry_iou(), "miou17": self.metrics.miou(17), "miou15": self.metrics.miou(15),
                "keyframes": len(self.truth), "query_ms_per_prompt": float(np.mean(self.query_ms))}


def class_prompts(predictor: OccupancyPredictor) -> dict[int, str]:
    """Occ3D id -> query prompt (class name, '_' as ' ') of every non-free class the vocabulary maps."""
    ids = sorted({c.occ3d_id for c in predictor.vocabulary.classes if c.occ3d_id not in (None, FREE_ID)})
    return {i: OCC3D_CLASSES[i].replace("_", " ") for i in ids}


def trained_keyframes(predictor: OccupancyPredictor, limit: int | None) -> Iterator[tuple[Prediction, np.ndarray,
                                                                                             np.ndarray]]:
    """(prediction, semantics, mask_camera) per val keyframe, predicted as gausstr-eval does."""
    data = predictor.config.data
    reader = NuScenesReader(data.dataroot, data.version, data.cameras)
    for token in reader.split_samples(data.val_split)[:limit]:
        record = reader.sample_record(token)
        prediction = predictor.predict(load_sample_views(record, data))
        truth = load_occ3d(occ3d_path(data.occ_root, record.scene, token), shape=predictor.grid.dims)
        yield prediction, np.asarray(truth.semantics), np.asarray(truth.mask_camera, dtype=bool)


def oracle_predictor(args: argparse.Namespace) -> tuple[OccupancyPredictor, OracleHead, GaussTRDataset]:
    """oracle_synthetic's oracle standing in for the network, and the val split with true depth."""
    config = oracle_config(Path(args.data), args.camera_mask, args.oracle_queries, args.config)
    knobs = OracleKnobs()
    oracle = OracleHead(config.model, config.grid.build(), knobs)
    predictor = OccupancyPredictor(oracle, config, text_encoder=dict(config.inference.text_encoder))
    oracle.prompt_ids, oracle.class_features = class_features(predictor, knobs.feature_gain)
    truth = dataclasses.replace(config, data=dataclasses.replace(config.data, depth_kind="synthetic_depth_gt"))
    return predictor, oracle, GaussTRDataset(truth, config.data.val_split)


def oracle_keyframes(args: argparse.Namespace, predictor: OccupancyPredictor, oracle: OracleHead,
                     dataset: GaussTRDataset) -> Iterator[tuple[Prediction, np.ndarray, np.ndarray]]:
    for index in range(len(dataset))[:args.limit]:
        sample = dataset[index]
        oracle.use(sample)
        prediction = predictor.predict(Views(None, sample.intrinsics, sample.cam2ego, depths=sample.depths,
                                             features=sample.features, original_to_input=sample.original_to_input))
        yield prediction, sample.occ_semantics.numpy(), sample.occ_mask_camera.numpy().astype(bool)


def trained_checkpoint(args: argparse.Namespace) -> Path:
    if args.checkpoint:
        return Path(args.checkpoint)
    world_config = ensure_world(Path(args.data), args.camera_mask)
    config = training_config(args.config, world_config, Path(args.out), [])
    print(f"training {config.model.num_queries} queries per view for {args.train_seconds:.0f} s ...")
    return train(config, device="cpu", max_seconds=args.train_seconds, show_progress=False).last_checkpoint


def score(name: str, predictor: OccupancyPredictor, keyframes: Iterator) -> dict:
    tic = time.perf_counter()
    scores = RetrievalScores(class_prompts(predictor))
    for prediction, semantics, mask in keyframes:
        scores.add(predictor, prediction, semantics, mask)
    summary = scores.summary()
    print(f"{name}: {summary['keyframes']} keyframes in {time.perf_counter() - tic:.0f} s, "
          f"{summary['query_ms_per_prompt']:.0f} ms per prompt")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="synthetic world folder (generated when absent)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="trained checkpoint to score")
    source.add_argument("--train-seconds", type=float, help="train config/learn_synthetic.yaml this long first")
    parser.add_argument("--camera-mask", choices=CAMERA_MASK_RULES, default=WORLD.camera_mask,
                        help="mask_camera rule the world must have been made with")
    parser.add_argument("--config", default=str(REPO / "config" / "learn_synthetic.yaml"), help="model YAML")
    parser.add_argument("--oracle-queries", type=int, default=128, help="oracle Gaussians per view")
    parser.add_argument("--limit", type=int, help="at most this many val keyframes")
    parser.add_argument("--out", default="work_dirs/retrieval_synthetic", help="work dir of --train-seconds")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")
    checkpoint = trained_checkpoint(args)
    config = run_config(checkpoint_config(checkpoint), None, args.data, [])  # as gausstr-eval --data
    trained = OccupancyPredictor.from_checkpoint(checkpoint, "cpu", config=config)
    results = {"trained": score(f"trained ({checkpoint})", trained, trained_keyframes(trained, args.limit))}
    oracle = oracle_predictor(args)
    results["oracle"] = score(f"oracle ({args.oracle_queries} per view)", oracle[0], oracle_keyframes(args, *oracle))

    print(f"\nretrieval on the val split, threshold {DEFAULT_THRESHOLD}; load average now "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    absent = "".join(f"{p + ' max':>18}{'> thr':>7}" for p in ABSENT)
    print(f"{'Gaussians':<10}{'IoU':>7}{'mIoU17':>8}{'mIoU15':>8}{'mAP':>7}{absent}")
    for name, r in results.items():
        cells = "".join(f"{r['absent'][p]['max_relevance']:>18.3f}{r['absent'][p]['voxels_above']:>7d}"
                        for p in ABSENT)
        print(f"{name:<10}{100 * r['iou']:>7.2f}{100 * r['miou17']:>8.2f}{100 * r['miou15']:>8.2f}"
              f"{100 * r['map']:>7.2f}{cells}")
    prompts = sorted({p for r in results.values() for p in r["ap"]})
    print("\nAP per class query (%): " + ", ".join(
        f"{p} " + "/".join(f"{100 * r['ap'].get(p, float('nan')):.1f}" for r in results.values()) for p in prompts)
        + "  (trained/oracle)")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"checkpoint": str(checkpoint), "results": results}, indent=2))
        os.replace(tmp, path)
    clean = all(r["absent"][p]["voxels_above"] == 0 for r in results.values() for p in ABSENT)
    print(f"absent concepts below the threshold everywhere: {'yes' if clean else 'NO'}")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
