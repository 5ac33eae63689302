"""The synthetic feature provider reads only images of the synthetic world (palette-fit test): every
gausstr-synth image passes at the JPEG qualities and input sizes used, photographs and procedural
textures are refused, and gausstr-eval passes the refusal on as a one-line error."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib import cbook
from PIL import Image
from tiny_world import synthetic_world, tiny_config, untrained_checkpoint

from gausstr_core.cli import eval as eval_cli
from gausstr_core.data.nuscenes import NuScenesReader
from gausstr_core.data.synthetic.generate import SynthOptions, generate_dataset
from gausstr_core.foundation.synthetic import NotSyntheticImageError, SyntheticFeatureProvider

PHOTOS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")  # shipped with matplotlib
INPUT_SIZES = ((112, 200), (56, 96))


def _load(path: Path | str | io.BytesIO) -> torch.Tensor:
    with Image.open(path) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)[None].float() / 255


def _resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


@pytest.fixture(scope="module")
def synthetic_jpegs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The 12 keyframe JPEGs (quality 95) of a 160x90 world; gausstr-synth itself already ran the
    provider on every one of them (resized) for its feature cache."""
    root = tmp_path_factory.mktemp("palette_world")
    generate_dataset(root, SynthOptions(scenes=1, samples_per_scene=2, sweeps=False, image_size=(160, 90),
                                        jpeg_quality=95, patch_size=8))
    return sorted((root / "samples").glob("*/*.jpg"))


@pytest.mark.parametrize("quality", [75, 90, 95])
def test_every_synthetic_image_passes(quality: int, synthetic_jpegs: list[Path]) -> None:
    images = []
    for path in synthetic_jpegs:  # re-encoded at `quality`: two compressions, harsher than the bag's one
        buffer = io.BytesIO()
        with Image.open(path) as image:
            image.save(buffer, format="JPEG", quality=quality, subsampling=0)
        images.append(_load(buffer))
    images = torch.cat(images)
    provider = SyntheticFeatureProvider(patch_size=8)
    assert images.shape[0] == 12
    provider(images)  # originals, as the node decodes them
    for size in INPUT_SIZES:
        provider(_resize(images, size))


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("grey", [False, True], ids=["colour", "grey"])
def test_photographs_are_refused(name: str, grey: bool) -> None:
    photo = _load(cbook.get_sample_data(name, asfileobj=False))
    if grey:
        photo = photo.mean(1, keepdim=True).expand(-1, 3, -1, -1).contiguous()
    provider = SyntheticFeatureProvider(patch_size=8)
    for image in (photo, _resize(photo, INPUT_SIZES[0])):
        with pytest.raises(NotSyntheticImageError, match="not from the synthetic world"):
            provider(image)


def _textures() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 3, 3, 6, generator=g)
    return {
        "uniform noise": torch.rand(1, 3, 90, 160, generator=g),
        "value noise": _resize(torch.rand(1, 3, 9, 16, generator=g), (90, 160)),
        "smooth noise": _resize(coarse, (90, 160)),
        "random checker": torch.rand(1, 3, 9, 16, generator=g).repeat_interleave(10, 2).repeat_interleave(10, 3),
        "grey ramp": torch.linspace(0, 1, 160).expand(1, 3, 90, 160).contiguous(),
    }


@pytest.mark.parametrize("name", sorted(_textures()))
def test_procedural_textures_are_refused(name: str) -> None:
    with pytest.raises(NotSyntheticImageError, match="not from the synthetic world"):
        SyntheticFeatureProvider(patch_size=8)(_textures()[name])


def test_gausstr_eval_passes_the_refusal_on(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    summary = synthetic_world(tmp_path, samples_per_scene=1)
    reader = NuScenesReader(summary.dataroot, summary.version)
    record = reader.sample_record(reader.split_samples("val")[0])
    front = Path(record.cameras["CAM_FRONT"].image_path)
    with Image.open(cbook.get_sample_data(PHOTOS[0], asfileobj=False)) as photo:
        photo.convert("RGB").resize((240, 135)).save(front, quality=90)  # a real photograph in a synthetic tree
    checkpoint = untrained_checkpoint(tmp_path / "tiny.pth", tiny_config())
    code = eval_cli.main([str(checkpoint), "--data", str(summary.dataroot), "--split", "val", "--no-progress",
                          "data.input_size=[112,200]"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("gausstr-eval: error: image 0 of the batch is not from the synthetic world")
