"""Oracle ceiling on the synthetic world: Gaussians fitted to the ground truth, scored like the model.

What a perfect GaussTR head could reach with Q Gaussians per view, inside the head's own
parameterisation (model/gaussian_head.py): a mean on a pixel's ray at any depth, three standard
deviations along the camera's optical axes (the rotation is the camera's), each in
[scale_range] x depth_map(pixel) x scale_multiplier / fx, an opacity in (0, 1) and a feature
vector. How the oracle builds them, per sample (the world's true depth and 3D labels only; the
scored mask is never looked at):
  1. Surface voxels: every network-input pixel with a true depth (synthetic_depth_gt cache) is
     back-projected; the occupied ground-truth voxel holding that point, or the one 0.2 m further
     along the ray when the first is free, is a surface voxel of that view. A voxel several views
     see goes to the view whose pixels hit it most. Voxels of classes the vocabulary cannot predict
     (others, other_flat) are left out.
  2. Gaussians per view: the Q queries are shared among the view's classes in proportion to
     count ** class_power (at least one per class present, while Q lasts); each class's voxels
     are cut into that many clusters by k-means on their centres.
  3. Each cluster -> one Gaussian: mean = the centroid (its pixel = the centroid's projection, its
     depth offset whatever puts it there); scales = scale_gain x the standard deviations of the
     cluster's voxel cubes along the optical axes, clamped to the head's range for the true depth
     at that pixel; opacity = flat_opacity for the flat classes (road, sidewalk, terrain), else
     solid_opacity; feature = the least-squares vector whose prompt logits are feature_gain for
     the class's first prompt and 0 for every other prompt.
  4. The Gaussians go through OccupancyPredictor.predict (the oracle stands in for the network),
     so filtering, voxelisation, prompt probabilities, denoising and labels are the trained
     model's, with the same config (config/learn_synthetic.yaml with the world's sections, as
     benchmarks/learn_synthetic.py trains and scores) and true depth as the depth input.
Scores: IoU (geometry), mIoU over 17 and 15 classes inside mask_camera over the world's `val`
split, as gausstr-eval; also density IoU (occupied = density above the threshold).
The knobs (opacities, scale gain) are tuned by a small coordinate-wise grid search (TUNE_GRID) on
`--tune-samples` keyframes of the train split with the first --queries value, never on the scored
split, and used for every --queries value; the chosen values are printed and saved.

Usage: python benchmarks/oracle_synthetic.py --data data/oracle_old --camera-mask depth_tolerance
       python benchmarks/oracle_synthetic.py --data data/learn_synthetic --json work_dirs/oracle.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks.learn_synthetic import REPO, WORLD, ensure_world, training_config
from gausstr_core.config import Config, ModelConfig
from gausstr_core.data import GaussTRDataset
from gausstr_core.data.occ3d import FREE_ID, OCC3D_CLASSES
from gausstr_core.data.sample import Sample
from gausstr_core.data.synthetic.occupancy import CAMERA_MASK_RULES
from gausstr_core.gaussians import Gaussians
from gausstr_core.geometry import covariance_from_scale_rotation, project_points, rotmat_to_quat, unproject_pixels
from gausstr_core.grid import VoxelGrid
from gausstr_core.metrics import OccupancyMetrics, occupancy_from_density
from gausstr_core.model.gaussian_head import sample_depth
from gausstr_core.predict import OccupancyPredictor, Views

FLAT_CLASSES = ("driveable_surface", "sidewalk", "terrain", "other_flat")
BEHIND_M = 0.2  # a free voxel at a surface point: look this far further along the ray


@dataclasses.dataclass(frozen=True)
class OracleKnobs:
    """Defaults: what the search chose on the depth_tolerance world at 128 Gaussians per view."""

    solid_opacity: float = 0.15
    flat_opacity: float = 0.5
    scale_gain: float = 1.0
    feature_gain: float = 10.0
    class_power: float = 1.0
    kmeans_iters: int = 10


class OracleHead(nn.Module):
    """Stands in for GaussTR inside OccupancyPredictor: returns the Gaussians fitted to the sample
    set with `use(sample)` (ground truth only), in the head's parameterisation (module docstring)."""

    def __init__(self, model: ModelConfig, grid: VoxelGrid, knobs: OracleKnobs) -> None:
        super().__init__()
        self.cfg, self.grid, self.knobs = model, grid, knobs
        # set from the predictor's vocabulary (class_features): (18,) prompt index per Occ3D id
        # (-1: not predictable) and (18, C) the feature of each Occ3D id
        self.prompt_ids = self.class_features = None
        self.flat = torch.tensor([OCC3D_CLASSES.index(c) for c in FLAT_CLASSES])
        self.sample: Sample | None = None

    def use(self, sample: Sample) -> None:
        self.sample = sample

    def sample_reference_points(self, batch: int, views: int, **_: object) -> torch.Tensor:
        """Unused by the oracle (it picks its own pixels); (B, N, Q, 2) zeros for the predictor."""
        return torch.zeros(batch, views, self.cfg.num_queries, 2)

    def check_inputs(self, *_: object) -> None:
        """The predictor's shape check before the network: the oracle's inputs are the dataset's."""

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def forward(self, features, depths, intrinsics, cam2ego, original_to_input, *, ref_points=None) -> list[Gaussians]:
        return self.decode(features, depths, intrinsics, cam2ego, original_to_input)

    def decode(self, value_maps, depths, intrinsics, cam2ego, original_to_input, ref_points=None) -> list[Gaussians]:
        """As GaussTR.decode for B = 1 (depths: the true depth); one Gaussians (1, N * Q)."""
        if self.sample is None:
            raise RuntimeError("OracleHead.use(sample) must come before predict")
        depths = depths.clamp(max=self.cfg.depth_max)
        voxels = surface_voxels(depths[0], intrinsics[0], cam2ego[0], original_to_input[0], self.grid,
                                self.sample.occ_semantics, self.prompt_ids >= 0)
        parts = [self._view_gaussians(ids, labels, depths[0, v], intrinsics[0, v], cam2ego[0, v],
                                      original_to_input[0, v])
                 for v, (ids, labels) in enumerate(voxels)]
        return [Gaussians(**{f.name: torch.cat([getattr(p, f.name) for p in parts])[None]
                            for f in dataclasses.fields(Gaussians)})]

    def _view_gaussians(self, ids: torch.Tensor, labels: torch.Tensor, depth: torch.Tensor, k: torch.Tensor,
                        cam2ego: torch.Tensor, original_to_input: torch.Tensor) -> Gaussians:
        """Q Gaussians (unbatched fields, (Q, ...)) for one view's surface voxels (flat ids, Occ3D labels)."""
        q, knobs = self.cfg.num_queries, self.knobs
        centres = self.grid.centers().reshape(-1, 3)[ids]
        means, covs, classes = [], [], []
        for cls, n in allocate(labels, q, knobs.class_power).items():
            points = centres[labels == cls]
            assign = kmeans(points, n, knobs.kmeans_iters)
            for c in range(n):
                member = points[assign == c]
                if len(member) == 0:
                    continue
                means.append(member.mean(0))
                covs.append(torch.cov(member.T, correction=0) if len(member) > 1 else torch.zeros(3, 3))
                classes.append(cls)
        count = len(means)
        rot = cam2ego[:3, :3]
        if count:
            mean = torch.stack(means)
            var_cam = torch.diagonal(rot.T @ torch.stack(covs) @ rot, dim1=-2, dim2=-1)
            sigma = knobs.scale_gain * (var_cam.clamp(min=0) + self.grid.size**2 / 12).sqrt()
            uv, _ = project_points(mean, cam2ego, k, original_to_input)
            size = depth.new_tensor([depth.shape[-1], depth.shape[-2]])
            at_pixel = sample_depth(depth[None, None], (uv / size).clamp(0, 1)[None, None])[0, 0]
            unit = (at_pixel * self.cfg.scale_multiplier / k[0, 0]).clamp(min=1e-6)[:, None]
            lo, hi = self.cfg.scale_range
            sigma = torch.minimum(torch.maximum(sigma, lo * unit), hi * unit)
            cls = torch.tensor(classes)
        pad = q - count  # unused queries: invisible (opacity 0) Gaussians at the camera
        mean = torch.cat([mean, cam2ego[:3, 3].expand(pad, 3)]) if count else cam2ego[:3, 3].expand(q, 3)
        sigma = torch.cat([sigma, torch.full((pad, 3), 1e-3)]) if count else torch.full((q, 3), 1e-3)
        cls = torch.cat([cls, torch.full((pad,), FREE_ID)]) if count else torch.full((q,), FREE_ID)
        opacity = torch.where(torch.isin(cls, self.flat), knobs.flat_opacity, knobs.solid_opacity)
        opacity = torch.where(cls == FREE_ID, 0.0, opacity)
        rots = rot.expand(q, 3, 3)
        return Gaussians(means=mean, scales=sigma, quats=rotmat_to_quat(rots),
                         covariances=covariance_from_scale_rotation(sigma, rots), opacities=opacity,
                         features=self.class_features[cls])


def surface_voxels(depths: torch.Tensor, intrinsics: torch.Tensor, cam2ego: torch.Tensor,
                   original_to_input: torch.Tensor, grid: VoxelGrid, semantics: torch.Tensor, predictable: torch.Tensor
                   ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per view, the ground-truth voxels its true depth sees (module docstring, step 1).

    depths (N, H, W) true optical z at the network input, m, 0 = sky; intrinsics, original_to_input (N, 3, 3);
    cam2ego (N, 4, 4); semantics (X, Y, Z) Occ3D ids; predictable (18,) bool. Returns per view
    (flat voxel ids (M,), Occ3D labels (M,)), each voxel in exactly one view.
    """
    n, h, w = depths.shape
    dims = torch.tensor(grid.dims)
    lo = torch.tensor(grid.min_corner)
    labels_flat = semantics.reshape(-1).long()
    rows, cols = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    pixels = torch.stack([cols, rows], -1).reshape(-1, 2)
    hits = []
    for v in range(n):
        d = depths[v].reshape(-1)
        valid = d > 0
        points = unproject_pixels(pixels[valid], d[valid], cam2ego[v], intrinsics[v], original_to_input[v])
        ray = points - cam2ego[v, :3, 3]
        ray = ray / ray.norm(dim=1, keepdim=True)
        chosen = torch.full((len(points),), -1, dtype=torch.long)
        for offset in (0.0, BEHIND_M):
            cell = torch.floor((points + offset * ray - lo) / grid.size).long()
            inside = ((cell >= 0) & (cell < dims)).all(1)
            flat = torch.where(inside, (cell * torch.tensor([dims[1] * dims[2], dims[2], 1])).sum(1), 0)
            occupied = inside & (labels_flat[flat] != FREE_ID) & (chosen < 0)
            chosen = torch.where(occupied, flat, chosen)
        chosen = chosen[chosen >= 0]
        chosen = chosen[predictable[labels_flat[chosen]]]
        ids, counts = torch.unique(chosen, return_counts=True)
        hits.append((ids, counts))
    all_ids = torch.cat([ids for ids, _ in hits])
    all_counts = torch.cat([c for _, c in hits])
    all_views = torch.cat([torch.full_like(ids, v) for v, (ids, _) in enumerate(hits)])
    order = torch.argsort(all_counts, descending=True, stable=True)  # each voxel -> its most-hitting view
    ids, views = all_ids[order], all_views[order]
    unique, inverse = torch.unique(ids, return_inverse=True)
    seen = torch.full((len(unique),), len(ids))
    seen.scatter_reduce_(0, inverse, torch.arange(len(ids)), reduce="amin")
    first = seen[inverse] == torch.arange(len(ids))
    return [(ids[first & (views == v)], labels_flat[ids[first & (views == v)]]) for v in range(n)]


def allocate(labels: torch.Tensor, queries: int, power: float) -> dict[int, int]:
    """Gaussians per class: proportional to count ** power, >= 1 per class while queries last,
    never more than the class's voxels; {Occ3D id: count}."""
    classes, counts = torch.unique(labels, return_counts=True)
    if len(classes) == 0:
        return {}
    order = torch.argsort(counts, descending=True)
    classes, counts = classes[order][:queries], counts[order][:queries]
    weight = counts.double() ** power
    extra = torch.floor((queries - len(classes)) * weight / weight.sum()).long()
    share = torch.minimum(1 + extra, counts)
    spare = queries - int(share.sum())
    while spare > 0 and bool((share < counts).any()):  # largest remainders first
        room = share < counts
        gap = torch.where(room, weight / weight.sum() * queries - share, -torch.inf)
        share[int(gap.argmax())] += 1
        spare -= 1
    return {int(c): int(s) for c, s in zip(classes, share)}


def kmeans(points: torch.Tensor, k: int, iters: int) -> torch.Tensor:
    """(M, 3) points -> (M,) cluster index in 0..k-1: farthest-point seeds, then Lloyd iterations."""
    if k >= len(points):
        return torch.arange(len(points))
    seeds = [0]
    dist = (points - points[0]).square().sum(1)
    for _ in range(k - 1):
        seeds.append(int(dist.argmax()))
        dist = torch.minimum(dist, (points - points[seeds[-1]]).square().sum(1))
    centres = points[seeds]
    for _ in range(iters):
        assign = torch.cdist(points, centres).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, assign, points)
        count = torch.bincount(assign, minlength=k)[:, None]
        centres = torch.where(count > 0, sums / count.clamp(min=1), centres)
    return torch.cdist(points, centres).argmin(1)


def class_features(predictor: OccupancyPredictor, gain: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(18,) prompt index per Occ3D id (-1: no prompt) and (18, C) features with logits `gain` for
    that prompt and 0 for the others (least squares through the prototypes)."""
    vocabulary, head = predictor.vocabulary, predictor.head
    prompt_ids = torch.full((len(OCC3D_CLASSES),), -1, dtype=torch.long)
    for index, cls in enumerate(vocabulary.classes):
        if cls.occ3d_id is not None and cls.occ3d_id != FREE_ID:
            prompt_ids[cls.occ3d_id] = int((head.prompt_to_class == index).nonzero()[0])
    prototypes = head.prototypes.double()
    targets = torch.zeros(len(OCC3D_CLASSES), prototypes.shape[0], dtype=torch.float64)
    known = prompt_ids >= 0
    targets[known, prompt_ids[known]] = gain
    features = (torch.linalg.pinv(prototypes) @ targets.T).T.float()
    return prompt_ids, features


def oracle_config(data_dir: Path, camera_mask: str, queries: int, config_path: str) -> Config:
    """The trained model's config (learn_synthetic's) with `queries` Gaussians per view."""
    world_config = ensure_world(data_dir, camera_mask)
    config = training_config(config_path, world_config, Path("work_dirs/oracle_unused"), [])
    return dataclasses.replace(config, model=dataclasses.replace(config.model, num_queries=queries))


def score(config: Config, knobs: OracleKnobs, split: str, samples: int | None = None) -> dict[str, float]:
    """Oracle scores on `split` (all keyframes, or `samples` of them evenly spread): IoU, mIoU17/15,
    density IoU, fractions in [0, 1]."""
    truth = dataclasses.replace(config, data=dataclasses.replace(config.data, depth_kind="synthetic_depth_gt"))
    dataset = GaussTRDataset(truth, split)
    oracle = OracleHead(config.model, config.grid.build(), knobs)
    predictor = OccupancyPredictor(oracle, config, text_encoder=dict(config.inference.text_encoder))
    oracle.prompt_ids, oracle.class_features = class_features(predictor, knobs.feature_gain)
    labels, density = OccupancyMetrics(), OccupancyMetrics()
    picks = range(len(dataset)) if samples is None else torch.linspace(0, len(dataset) - 1, samples).round().long()
    for index in sorted({int(i) for i in picks}):
        sample = dataset[index]
        oracle.use(sample)
        prediction = predictor.predict(Views(None, sample.intrinsics, sample.cam2ego, depths=sample.depths,
                                             features=sample.features, original_to_input=sample.original_to_input))
        labels.update(prediction.labels_occ3d(), sample.occ_semantics, sample.occ_mask_camera)
        density.update(occupancy_from_density(prediction.density, config.inference.density_threshold),
                       sample.occ_semantics, sample.occ_mask_camera)
    return {"iou": labels.geometry_iou(), "miou17": labels.miou(17), "miou15": labels.miou(15),
            "density_iou": density.geometry_iou()}


def tune(config: Config, samples: int, grid: dict[str, tuple[float, ...]]) -> tuple[OracleKnobs, dict]:
    """Best knobs by mIoU15 + IoU / 2 on `samples` train keyframes spread over the split
    (coordinate-wise search in the order of `grid`)."""
    knobs, best = OracleKnobs(), None
    for name, values in grid.items():
        results = {}
        for value in values:
            trial = dataclasses.replace(knobs, **{name: value})
            s = score(config, trial, config.data.train_split, samples)
            results[value] = (s["miou15"] + s["iou"] / 2, s)
        value = max(results, key=lambda v: results[v][0])
        knobs, best = dataclasses.replace(knobs, **{name: value}), results[value][1]
        print(f"  tune {name}: " + ", ".join(f"{v}: {100 * r[0]:.1f}" for v, r in results.items()) + f" -> {value}")
    return knobs, best


TUNE_GRID = {
    "solid_opacity": (0.1, 0.15, 0.2),
    "scale_gain": (0.8, 1.0),
    "flat_opacity": (0.5, 1.0),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="synthetic world folder (generated when absent)")
    parser.add_argument("--camera-mask", choices=CAMERA_MASK_RULES, default=WORLD.camera_mask,
                        help="mask_camera rule the world must have been made with")
    parser.add_argument("--queries", type=int, nargs="+", default=[128, 300], help="Gaussians per view")
    parser.add_argument("--config", default=str(REPO / "config" / "learn_synthetic.yaml"), help="model YAML")
    parser.add_argument("--tune-samples", type=int, default=3, help="train keyframes for the knob search (0: off)")
    parser.add_argument("--json", help="write the results here (read by learn_synthetic / gausstr-eval --oracle)")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")
    try:
        configs = {q: oracle_config(Path(args.data), args.camera_mask, q, args.config) for q in args.queries}
    except (FileNotFoundError, ValueError) as exc:
        print(f"oracle_synthetic: error: {exc}", file=sys.stderr)
        return 2
    results, knobs = {}, OracleKnobs()
    if args.tune_samples:
        tic = time.perf_counter()
        print(f"tuning on {args.tune_samples} train keyframes, {args.queries[0]} Gaussians per view")
        knobs, _ = tune(configs[args.queries[0]], args.tune_samples, TUNE_GRID)
        print(f"tuned in {time.perf_counter() - tic:.0f} s: {knobs}")
    for q, config in configs.items():
        tic = time.perf_counter()
        print(f"\n== {q} Gaussians per view, camera mask {args.camera_mask!r}")
        s = score(config, knobs, config.data.val_split)
        results[q] = {"queries_per_view": q, "knobs": dataclasses.asdict(knobs), **s}
        print(f"oracle on val ({time.perf_counter() - tic:.0f} s): IoU {100 * s['iou']:.2f}, "
              f"mIoU17 {100 * s['miou17']:.2f}, mIoU15 {100 * s['miou15']:.2f}, "
              f"density IoU {100 * s['density_iou']:.2f}; knobs {knobs}")
    if args.json:
        out = {"camera_mask": args.camera_mask, "data": str(Path(args.data).resolve()),
               "results": {str(q): r for q, r in results.items()}}
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(out, indent=2))
        os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
