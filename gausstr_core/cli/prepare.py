"""`gausstr-prepare`: text prototypes, and feature / depth caches of a nuScenes split.

    gausstr-prepare text --vocabulary vocabulary_occ3d.yaml --provider t2d.yaml --out protos.pth
    gausstr-prepare features --config cfg.yaml --split train --provider dinov2.yaml --kind talk2dino
    gausstr-prepare depth --dataroot data/nuscenes --version v1.0-mini --split mini_train \\
        --provider '{name: metric3d, hub_dir: ~/Metric3D, entry: metric3d_vit_large}' --kind metric3d

`--provider` is a YAML/JSON file, an inline YAML mapping or a bare provider name; `--option
key=value` (YAML value) adds or overrides spec keys. Unset data options come from `--config`
(`data.*`; the feature/depth kind and provider spec too). Every keyframe image of the split is
resized (whole frame) to `--input-size` for feature providers; depth providers see the original
image and their maps are resized to `--input-size` as the dataset resizes depth. Maps go to
`<cache_root>/<kind>/<sample_data_token>.npy` (features float16, depth float32, atomic) with
`<kind>/meta.json`. Finished files are skipped, so a killed run resumes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image
from tqdm import tqdm

from gausstr_core.atomic_files import remove_stale_temporaries
from gausstr_core.cli.entry import CliParser, console_script
from gausstr_core.config import load_config
from gausstr_core.data.augment import plan_resize_crop
from gausstr_core.data.cache import cache_path, read_cache_meta, write_cache_map, write_cache_meta

MAP_FEATURE, MAP_DEPTH = "feature", "depth"


@dataclass(frozen=True)
class ImageJob:
    """One camera image to cache: intrinsics (3, 3) of the original image."""

    token: str
    path: str
    intrinsics: np.ndarray


def parse_provider_spec(
    text: str | None, options: list[str] | None = None, default: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Provider spec from a file path, an inline YAML mapping or a bare name, plus `key=value` overrides."""
    if text:
        path = Path(text).expanduser()
        if path.suffix in {".yaml", ".yml", ".json"}:
            if not path.is_file():
                raise FileNotFoundError(f"provider spec file not found: {path}")
            loaded = yaml.safe_load(path.read_text())
        else:
            loaded = yaml.safe_load(text)
        spec = {"name": loaded} if isinstance(loaded, str) else loaded
    else:
        spec = dict(default or {})
    if not isinstance(spec, dict):
        raise ValueError(f"provider spec must be a mapping or a name, got {text!r}")
    spec = dict(spec)
    for item in options or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option {item!r} must look like key=value")
        spec[key.strip()] = yaml.safe_load(raw)
    if not isinstance(spec.get("name"), str):
        raise ValueError(f"provider spec needs a 'name' (give --provider or a config with one), got {spec!r}")
    return spec


def list_image_jobs(
    dataroot: str, version: str, split: str, cameras: tuple[str, ...], limit: int | None
) -> list[ImageJob]:
    """Every camera image of the first `limit` keyframes of `split` (all when None)."""
    from gausstr_core.data.nuscenes import NuScenesReader

    reader = NuScenesReader(dataroot, version, cameras)
    tokens = reader.split_samples(split)
    if limit is not None:
        tokens = tokens[: max(limit, 0)]
    jobs = []
    for token in tokens:
        record = reader.sample_record(token)
        for cam in cameras:
            camera = record.cameras[cam]
            jobs.append(ImageJob(camera.sample_data_token, camera.image_path, camera.intrinsics))
    return jobs


def load_batch(
    jobs: list[ImageJob], input_size: tuple[int, int] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, 3, H, W) in [0, 1] resized (whole frame) to input_size, or as stored when input_size
    is None (the original frames, one size for the batch), and intrinsics (B, 3, 3) of those pixels."""
    images, intrinsics = [], []
    for job in jobs:
        if not os.path.isfile(job.path):
            raise FileNotFoundError(f"image of sample_data {job.token} not found: {job.path}")
        with Image.open(job.path) as handle:
            image = torch.from_numpy(np.array(handle.convert("RGB"))).permute(2, 0, 1)
        resize = plan_resize_crop(tuple(image.shape[-2:]), input_size or tuple(image.shape[-2:]))
        images.append(resize.image(image.float() / 255.0))
        intrinsics.append(resize.matrix.double() @ torch.as_tensor(job.intrinsics, dtype=torch.float64))
    sizes = sorted({tuple(image.shape[-2:]) for image in images})
    if len(sizes) > 1:
        raise ValueError(f"images of one batch differ in size {sizes} ({jobs[0].path} ...); use --batch-size 1")
    return torch.stack(images), torch.stack(intrinsics).float()


def check_or_write_meta(root: Path, kind: str, meta: dict[str, Any]) -> None:
    """Write `<kind>/meta.json`, or check that an existing one (a run to resume) describes the same maps."""
    if not (root / kind / "meta.json").is_file():
        write_cache_meta(root, kind, meta)
        return
    existing = read_cache_meta(root, kind)
    for key in ("map", "provider", "input_size", "channels", "patch_size", "provider_input"):
        if existing.get(key) != meta.get(key):
            raise ValueError(
                f"cache {root / kind} was written with {key}={existing.get(key)!r}, this run has {meta.get(key)!r}; "
                "choose another --kind or delete that folder"
            )


def _batches(jobs: list[ImageJob], size: int) -> Iterator[list[ImageJob]]:
    for start in range(0, len(jobs), size):
        yield jobs[start : start + size]


def write_maps(
    provider: Any,
    map_kind: str,
    jobs: list[ImageJob],
    root: Path,
    kind: str,
    input_size: tuple[int, int],
    batch_size: int,
) -> int:
    """Run `provider` over the jobs whose cache file is missing; returns the number of files written.

    Feature providers get the images resized (whole frame) to input_size. Depth providers get the
    original images and their intrinsics, as the authors run the depth model; their maps are then
    resized to input_size the way GaussTRDataset resizes depth (ResizeCrop.depth).
    """
    load_size = input_size if map_kind == MAP_FEATURE else None
    pending = [job for job in jobs if not cache_path(root, kind, job.token).is_file()]
    batches = list(_batches(pending, batch_size))
    progress = tqdm(total=len(jobs), initial=len(jobs) - len(pending), desc=f"{map_kind} -> {kind}", unit="img")
    written = 0
    with ThreadPoolExecutor(max_workers=1) as loader:  # decode the next batch while the model runs
        upcoming = loader.submit(load_batch, batches[0], load_size) if batches else None
        for index, batch in enumerate(batches):
            images, intrinsics = upcoming.result()
            if index + 1 < len(batches):
                upcoming = loader.submit(load_batch, batches[index + 1], load_size)
            if map_kind == MAP_FEATURE:
                maps = provider(images)
            else:
                maps = plan_resize_crop(tuple(images.shape[-2:]), input_size).depth(provider(images, intrinsics))
            for job, array in zip(batch, maps):
                write_cache_map(root, kind, job.token, array)
                written += 1
            progress.update(len(batch))
    progress.close()
    return written


def run_text(args: argparse.Namespace) -> None:
    from gausstr_core.foundation.registry import build_text_encoder
    from gausstr_core.resources import resolve_resource
    from gausstr_core.vocabulary import Vocabulary, compute_prototypes, save_prototypes

    vocabulary = Vocabulary.load(resolve_resource(args.vocabulary, "vocabulary file"))
    spec = parse_provider_spec(args.provider, args.option)
    encoder = build_text_encoder(spec, device=args.device)
    prototypes = compute_prototypes(vocabulary, encoder, provider=spec["name"])
    save_prototypes(prototypes, args.out)
    print(f"wrote {args.out}: {len(prototypes.prompts)} prompts x {prototypes.embeddings.shape[1]} ({spec['name']})")


def run_maps(args: argparse.Namespace) -> None:
    from gausstr_core.foundation.registry import build_depth_provider, build_feature_provider

    data = load_config(args.config).data
    map_kind = MAP_FEATURE if args.command == "features" else MAP_DEPTH
    default_spec = data.feature_provider if map_kind == MAP_FEATURE else data.depth_provider
    spec = parse_provider_spec(args.provider, args.option, default_spec)
    kind = args.kind or (data.feature_kind if map_kind == MAP_FEATURE else data.depth_kind)
    root = Path(args.cache_root or data.cache_root)
    input_size = tuple(args.input_size or data.input_size)
    cameras = tuple(args.cameras or data.cameras)
    split = args.split or data.train_split
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")

    jobs = list_image_jobs(args.dataroot or data.dataroot, args.version or data.version, split, cameras, args.limit)
    build = build_feature_provider if map_kind == MAP_FEATURE else build_depth_provider
    provider = build(spec, device=args.device)
    meta = {"map": map_kind, "provider": spec["name"], "input_size": list(input_size), "spec": _plain(spec)}
    if map_kind == MAP_DEPTH:
        meta["provider_input"] = "original"  # the depth model saw the original images
    if map_kind == MAP_FEATURE:
        meta.update(channels=int(provider.feature_dim), patch_size=int(provider.patch_size))
        if input_size[0] % provider.patch_size or input_size[1] % provider.patch_size:
            raise ValueError(
                f"--input-size {input_size} must be a multiple of the provider's patch size {provider.patch_size}"
            )
    check_or_write_meta(root, kind, meta)
    stale = len(remove_stale_temporaries(root / kind))
    written = write_maps(provider, map_kind, jobs, root, kind, input_size, args.batch_size)
    print(
        f"{kind}: wrote {written}, skipped {len(jobs) - written} already cached, removed {stale} stale temporaries "
        f"({len(jobs)} images of split {split!r})"
    )


def _plain(value: Any) -> Any:
    """JSON-safe copy of a spec."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="gausstr-prepare", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    text = sub.add_parser("text", help="vocabulary -> text prototype file")
    text.add_argument("--vocabulary", required=True, help="vocabulary YAML (path, or a packaged one's name)")
    text.add_argument("--out", required=True, help="prototype file to write")

    for name, help_text in (("features", "feature-map caches"), ("depth", "depth-map caches")):
        maps = sub.add_parser(name, help=f"write {help_text} of a nuScenes split")
        maps.add_argument("--config", help="GaussTR config YAML whose data section gives the defaults")
        maps.add_argument("--dataroot")
        maps.add_argument("--version")
        maps.add_argument("--split", help="nuScenes split (default: data.train_split)")
        maps.add_argument("--cache-root")
        maps.add_argument("--kind", help="cache sub-folder (default: data.feature_kind / data.depth_kind)")
        maps.add_argument("--cameras", nargs="+")
        maps.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"))
        maps.add_argument("--batch-size", type=int, default=6)
        maps.add_argument("--limit", type=int, help="only the first N keyframes of the split")

    for command in sub.choices.values():
        command.add_argument("--provider", help="spec: YAML/JSON file, inline YAML mapping or provider name")
        command.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="set a spec key")
        command.add_argument("--device", help="torch device (overrides the spec's)")
    return parser


@console_script("gausstr-prepare")
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "text":
        run_text(args)
    else:
        run_maps(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
