"""Benchmark OccupancyPredictor.predict: latency per stage, median over repeats (after one warm-up).

Input: one keyframe of a freshly generated synthetic world (6 cameras, nuScenes rig), its decoded
JPEGs upscaled to 1600x900 with intrinsics scaled to match (so the resize and the Gaussians' scales
are those of nuScenes), and the world's depth estimate at 112x200 (what the bag's depth topics
carry). Untrained weights (latency does not depend on training, except through how many
Gaussians pass the opacity filter: the count is printed). Cases:
  tiny:  config/tiny.yaml, 112x200 input, synthetic feature provider run on the images;
  full:  config/gausstr_talk2dino.yaml, 504x896 input, precomputed 768x36x64 features (the DINOv2
         ViT-B/14 cache), on CPU unless --skip-full-cpu. The Gaussian filter stays on, but with
         min_opacity 0: untrained opacities sit near 0.5, under the config's 0.6, and would leave
         nothing to voxelise;
  full+vit (CUDA only): the same with an untrained timm ViT-B/14-reg4 as the online feature provider.
Every case runs on CPU, and again on CUDA when a GPU is present (predictor profile=True: CUDA
synchronised at every stage boundary, so each stage holds its own GPU time). Depth is always given (no depth
network). Prints the table, then per case the ratio of a 10 Hz frame budget (100 ms) to the median
total latency (>= 1: keeps up with 10 Hz).

Usage: python benchmarks/predict.py [--threads 2] [--repeats 5] [--skip-full-cpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gausstr_core.cli.run_config import run_config
from gausstr_core.config import Config, load_config
from gausstr_core.data.nuscenes import NuScenesReader
from gausstr_core.data.synthetic.generate import SynthOptions, generate_dataset
from gausstr_core.foundation.synthetic import SyntheticTextEncoder
from gausstr_core.model import GaussTR
from gausstr_core.predict import STAGES, OccupancyPredictor, Views
from gausstr_core.prediction_io import load_sample_views

ROOT = Path(__file__).resolve().parents[1]
NUSCENES_SIZE = (900, 1600)  # H, W
FRAME_BUDGET_MS = 100.0  # 10 Hz


def world_views(tmp: Path) -> tuple[Views, Config]:
    """One synthetic keyframe at nuScenes resolution (see module docstring) and the world's config."""
    summary = generate_dataset(tmp / "world", SynthOptions(
        scenes=1, samples_per_scene=1, image_size=(400, 225), input_size=(112, 200), sweeps=False, patch_size=8,
        feature_dim=64))
    config = run_config(load_config(ROOT / "config/tiny.yaml"), str(summary.config_path), None, [])
    reader = NuScenesReader(config.data.dataroot, config.data.version, config.data.cameras)
    views = load_sample_views(reader.sample_record(reader.split_samples("val")[0]), config.data)
    scale = NUSCENES_SIZE[1] / views.image_size[1]
    images = F.interpolate(views.images.float(), size=NUSCENES_SIZE, mode="bilinear", align_corners=False)
    intrinsics = views.intrinsics.clone()
    intrinsics[:, :2] *= scale
    views = dataclasses.replace(views, images=images.round().clamp(0, 255).to(torch.uint8), intrinsics=intrinsics,
                                image_size=NUSCENES_SIZE)
    return views, config


class UntrainedViT:
    """FeatureProvider stand-in for DINOv2 ViT-B/14-reg4 (random weights): (B, 768, H/14, W/14) patch tokens."""

    feature_dim = 768
    patch_size = 14

    def __init__(self, input_size: tuple[int, int], device: torch.device) -> None:
        import timm

        self.net = timm.create_model("vit_base_patch14_reg4_dinov2", pretrained=False, img_size=input_size,
                                     num_classes=0).to(device).eval()
        self.grid = (input_size[0] // 14, input_size[1] // 14)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.net.forward_features(images)[:, self.net.num_prefix_tokens:]
        return tokens.transpose(1, 2).reshape(images.shape[0], self.feature_dim, *self.grid)


def measure(predictor: OccupancyPredictor, views: Views, repeats: int) -> tuple[dict[str, float], int]:
    """Median ms per stage over `repeats` predictions (after one warm-up) and the Gaussians voxelised."""
    prediction = predictor.predict(views)
    runs = [predictor.predict(views).timings for _ in range(repeats)]
    return {stage: statistics.median(r[stage] for r in runs) for stage in STAGES}, prediction.gaussians.means.shape[1]


def full_case(views: Views, device: torch.device, vit: bool) -> tuple[OccupancyPredictor, Views]:
    config = load_config(ROOT / "config/gausstr_talk2dino.yaml", ["inference.min_opacity=0.0"])
    torch.manual_seed(0)
    provider = UntrainedViT(config.data.input_size, device) if vit else None
    predictor = OccupancyPredictor(GaussTR(config.model), config, device=device, feature_provider=provider,
                                   text_encoder=SyntheticTextEncoder(config.model.feature_dim), profile=True)
    if vit:
        return predictor, views
    h, w = (s // config.model.patch_size for s in config.data.input_size)
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(views.images.shape[0], config.model.feature_dim, h, w, generator=generator)
    return predictor, dataclasses.replace(views, images=None, features=features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-full-cpu", action="store_true", help="skip the full config on CPU")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        views, world_config = world_views(Path(tmp))
        print(f"synthetic world: {time.perf_counter() - start:.1f} s; torch {torch.__version__}, "
              f"{args.threads} CPU threads" + (f", GPU {torch.cuda.get_device_name()}" if len(devices) > 1 else ""))
        results = []
        for device in devices:
            torch.manual_seed(0)
            tiny = OccupancyPredictor(GaussTR(world_config.model), world_config, device=device,
                                      feature_provider=dict(world_config.data.feature_provider),
                                      text_encoder={"name": "synthetic"}, profile=True)
            results.append((f"tiny {device.type}", *measure(tiny, views, args.repeats)))
            for vit in (False, True):
                if (vit and device.type != "cuda") or (device.type == "cpu" and args.skip_full_cpu):
                    continue
                predictor, case_views = full_case(views, device, vit)
                name = f"full{'+vit' if vit else ''} {device.type}"
                results.append((name, *measure(predictor, case_views, args.repeats)))
    print(f"\nmedian ms per stage over {args.repeats} runs")
    print(f"{'case':<16}{'G':>6}" + "".join(f"{s:>12}" for s in STAGES))
    for name, timings, gaussians in results:
        print(f"{name:<16}{gaussians:>6}" + "".join(f"{timings[s]:>12.1f}" for s in STAGES))
    print()
    for name, timings, _ in results:
        print(f"ratio {name}: 100 ms frame budget / total = {FRAME_BUDGET_MS / timings['total']:.3f}")


if __name__ == "__main__":
    main()
