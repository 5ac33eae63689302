"""Measurement behind the synthetic provider's palette-fit thresholds (gausstr_core.foundation.synthetic).

Prints, per image set, the smallest share of single-class ("interior") pixels and the largest
(synthetic sets) or smallest (other sets) share of interior pixels farther than FIT_TOLERANCE
from their palette colour: synthetic worlds
at JPEG quality 50-95 and 160x90 / 960x540 originals, each also resized to input sizes down to
28x48; matplotlib's sample photographs in colour and grey; procedural textures. Every synthetic
set must stay inside (MIN_INTERIOR, MAX_MISFIT), every other set outside.
Usage: python benchmarks/palette_fit.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import cbook
from PIL import Image

from gausstr_core.data.synthetic.generate import SynthOptions, generate_dataset
from gausstr_core.foundation.synthetic import FIT_TOLERANCE, MAX_MISFIT, MIN_INTERIOR, palette_fit

SIZES = ((112, 200), (56, 96), (28, 48))


def _load(path: Path | str) -> torch.Tensor:
    with Image.open(path) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)[None].float() / 255


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def statistics(image: torch.Tensor) -> tuple[float, float]:
    """(interior share, misfit share of the interior) of one (1, 3, H, W) image, as check_palette_fit."""
    classes, distances = palette_fit(image)
    padded = F.pad(classes[:, None].float(), (1, 1, 1, 1), mode="replicate")
    interior = (F.max_pool2d(padded, 3, 1) == -F.max_pool2d(-padded, 3, 1))[0, 0]
    misfit = float((interior & (distances[0] > FIT_TOLERANCE)).sum()) / max(int(interior.sum()), 1)
    return float(interior.float().mean()), misfit


def report(name: str, images: list[torch.Tensor], synthetic: bool) -> bool:
    stats = np.array([statistics(image) for image in images])
    inside = (stats[:, 0] >= MIN_INTERIOR) & (stats[:, 1] <= MAX_MISFIT)
    ok = bool(inside.all()) if synthetic else bool((~inside).all())
    worst = f"misfit <= {stats[:, 1].max():.3f}" if synthetic else f"misfit >= {stats[:, 1].min():.3f}"
    print(f"{name:44s} interior >= {stats[:, 0].min():.2f}  {worst}  {'ok' if ok else 'WRONG'}")
    return ok


def main() -> None:
    torch.set_num_threads(1)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for quality in (50, 75, 90, 95):
            for size in ((160, 90), (960, 540)):
                out = Path(tmp) / f"q{quality}_{size[0]}"
                samples = 2 if size[0] < 500 else 1
                generate_dataset(out, SynthOptions(scenes=1, samples_per_scene=samples, sweeps=False, image_size=size,
                                                   jpeg_quality=quality, seed=quality))
                images = [_load(p) for p in sorted((out / "samples").glob("*/*.jpg"))]
                ok &= report(f"synthetic q{quality} {size[0]}x{size[1]}", images, True)
                for target in SIZES:
                    resized = [_resize(i, target) for i in images]
                    ok &= report(f"synthetic q{quality} {size[0]}x{size[1]} -> {target[1]}x{target[0]}", resized, True)
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"):
        photo = _load(cbook.get_sample_data(name, asfileobj=False))
        grey = photo.mean(1, keepdim=True).expand(-1, 3, -1, -1)
        ok &= report(name, [photo, *[_resize(photo, s) for s in SIZES[:2]]], False)
        ok &= report(f"{name} grey", [grey, _resize(grey, SIZES[0])], False)
    g = torch.Generator().manual_seed(0)
    textures = {
        "uniform noise": torch.rand(1, 3, 90, 160, generator=g),
        "value noise 9x16 cells": _resize(torch.rand(1, 3, 9, 16, generator=g), (90, 160)),
        "value noise 3x6 cells": _resize(torch.rand(1, 3, 3, 6, generator=g), (90, 160)),
        "random checker": torch.rand(1, 3, 9, 16, generator=g).repeat_interleave(10, 2).repeat_interleave(10, 3),
        "grey ramp": torch.linspace(0, 1, 160).expand(1, 3, 90, 160),
    }
    for name, texture in textures.items():
        ok &= report(name, [texture], False)
    print("all sets on the right side of the thresholds" if ok else "SOME SETS ARE ON THE WRONG SIDE")


if __name__ == "__main__":
    main()
