"""Parity with the authors' code: a converted authors' checkpoint predicts what their inference would.

The mmengine-style checkpoint is built from the key fixture (test/fixtures) with seeded random
weights and a known (feature_dim, prompts) text-prototype buffer, converted, and run with no
vocabulary argument. The expected labels are computed here from the Gaussians and that buffer,
following the authors' inference step by step (their prompt groups and group -> Occ3D mapping are
written out below, not read from our vocabulary file).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_model_convert import _fixture, _write_authors_file

from gausstr_core.cli.eval import main as eval_main
from gausstr_core.config import load_config
from gausstr_core.data.synthetic.rig import nuscenes_rig
from gausstr_core.model.authors_weights import convert_authors_checkpoint
from gausstr_core.model.neck import LayerNorm2d
from gausstr_core.predict import OccupancyPredictor, Views

# The authors' 16 prompt groups (21 prompts) in their order; group g -> Occ3D id g + 1, + 1 more for g > 10.
GROUPS = (("barrier",), ("bicycle",), ("bus",), ("car",), ("construction vehicle",), ("motorcycle",), ("person",),
          ("cone",), ("trailer",), ("truck",), ("road",), ("sidewalk",), ("terrain", "grass"),
          ("building", "wall", "fence", "pole", "sign"), ("vegetation",), ("sky",))
PROMPT_GROUP = torch.tensor([g for g, prompts in enumerate(GROUPS) for _ in prompts])
GROUP_TO_OCC3D = torch.tensor([g + 1 + (g > 10) for g in range(len(GROUPS))])
FREE = 17
INPUT = (56, 112)  # patch 14 -> 4 x 8 feature maps
ORIGINAL = (450, 800)
REDUCED_GRID = ["grid.range=[-12.8,-12.8,-1.0,12.8,12.8,5.4]"]  # 64 x 64 x 16 voxels of 0.4 m


def _seeded_weight(index: int, key: str, shape: tuple[int, ...]) -> torch.Tensor:
    if key.startswith("backbone."):  # the frozen DINOv2: not part of GaussTR, one stored number each
        return torch.zeros(1).expand(shape)
    generator = torch.Generator().manual_seed(1000 + index)
    noise = torch.randn(shape, generator=generator)
    if key.endswith("opacity_head.layers.1.bias"):  # opacities around the Talk2DINO filter's 0.6
        return torch.full(shape, 1.5)
    if key.endswith("scale_head.layers.1.bias"):  # Gaussians of some 0.2-0.5 m
        return torch.full(shape, -2.0)
    if len(shape) == 1:  # LayerNorm weights around 1, biases around 0
        return (1.0 if key.endswith("weight") else 0.0) + 0.02 * noise
    return noise / math.sqrt(math.prod(shape[1:]))


def write_authors_checkpoint(path: Path, buffer: torch.Tensor) -> None:
    """The authors' Talk2DINO state dict (fixture keys), seeded random weights, text_proto_embeds = buffer (C, P)."""
    entries, _, _ = _fixture("talk2dino")
    volume = torch.tensor([-40.0, -40.0, -1.0, 40.0, 40.0, 5.4])
    state = {}
    for index, (key, shape, kind) in enumerate(entries):
        if key.endswith("text_proto_embeds"):
            assert shape == tuple(buffer.shape)
            state[key] = buffer
        elif kind == "buffer":
            state[key] = volume
        else:
            state[key] = _seeded_weight(index, key, shape)
    _write_authors_file(path, state)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> tuple[Path, torch.Tensor]:
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("parity")
    buffer = 0.1 * torch.randn(768, 21, generator=torch.Generator().manual_seed(7))  # (feature_dim, prompts)
    write_authors_checkpoint(folder / "authors.pth", buffer)
    config = load_config(repo_root / "config/gausstr_talk2dino.yaml",
                         [f"data.input_size=[{INPUT[0]},{INPUT[1]}]", f"data.image_size=[{ORIGINAL[0]},{ORIGINAL[1]}]",
                          *REDUCED_GRID])
    convert_authors_checkpoint(folder / "authors.pth", folder / "converted.pt", config)
    return folder / "converted.pt", buffer


def _voxel_labels(means, covariances, opacities, prompt_probs, grid_range, size=0.4) -> torch.Tensor:
    """The authors' voxel inference, dense and in float64: 3-sigma boxes, density-weighted prompt
    probabilities, softmax, prompt denoising, synonym max, density threshold, group -> Occ3D."""
    lo, hi = torch.tensor(grid_range[:3], dtype=torch.float64), torch.tensor(grid_range[3:], dtype=torch.float64)
    dims = [int(round(float(n))) for n in (hi - lo) / size]
    axes = [lo[i] + (torch.arange(dims[i], dtype=torch.float64) + 0.5) * size for i in range(3)]
    centres = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    index = torch.stack(torch.meshgrid(*[torch.arange(n) for n in dims], indexing="ij"), -1).reshape(-1, 3)
    means, opacities, prompt_probs = means.double(), opacities.double(), prompt_probs.double()
    covariances = covariances.double()
    diagonal = torch.diagonal(covariances, dim1=-2, dim2=-1)
    # the voxeliser's documented regularisation: Sigma + (1e-6 + 1e-5 mean(diag Sigma)) I
    covariances = covariances + (1e-6 + 1e-5 * diagonal.mean(-1))[:, None, None] * torch.eye(3, dtype=torch.float64)
    sigma = torch.diagonal(covariances, dim1=-2, dim2=-1).sqrt()
    first = torch.floor((means - 3 * sigma - lo) / size)
    last = torch.floor((means + 3 * sigma - lo) / size)
    density = torch.zeros(len(centres), dtype=torch.float64)
    weighted = torch.zeros(len(centres), prompt_probs.shape[1], dtype=torch.float64)
    for g in range(len(means)):
        inside = ((index >= first[g]) & (index <= last[g])).all(-1)
        d = centres[inside] - means[g]
        w = opacities[g] * torch.exp(-0.5 * (d @ torch.linalg.inv(covariances[g]) * d).sum(-1))
        density[inside] += w
        weighted[inside] += w[:, None] * prompt_probs[g]
    q = weighted / density.clamp(min=1e-6)[:, None]
    probs = q.softmax(-1)
    keep = (100 * q).softmax(-1).amax(0) >= 0.1
    probs = probs * keep
    groups = torch.zeros(len(centres), len(GROUPS), dtype=torch.float64)
    groups = groups.scatter_reduce(1, PROMPT_GROUP.expand(len(centres), -1), probs, reduce="amax")
    top2 = groups.topk(2, dim=-1).values
    labels = torch.where(density <= 4e-2, FREE, GROUP_TO_OCC3D[groups.argmax(-1)])
    class_margin = (top2[:, 0] - top2[:, 1]) / top2[:, 0].clamp(min=1e-12)
    margin = torch.where(density <= 4e-2, 4e-2 - density, torch.minimum(class_margin, density - 4e-2))
    return labels.reshape(dims), margin.reshape(dims)


def test_converted_checkpoint_predicts_the_authors_labels(converted: tuple[Path, torch.Tensor]) -> None:
    path, buffer = converted
    predictor = OccupancyPredictor.from_checkpoint(path)  # no vocabulary, no prototypes, no text encoder
    assert predictor.prototypes_source.startswith(f"checkpoint {path.name} (converted from authors.pth)")
    rig = nuscenes_rig(ORIGINAL[1], ORIGINAL[0])
    generator = torch.Generator().manual_seed(3)
    views = Views(
        images=None,
        intrinsics=torch.tensor(np.stack([c.intrinsics for c in rig]), dtype=torch.float32),
        cam2ego=torch.tensor(np.stack([c.cam2ego for c in rig]), dtype=torch.float32),
        depths=4.0 + 6.0 * torch.rand(6, *INPUT, generator=generator),
        features=torch.randn(6, 768, INPUT[0] // 14, INPUT[1] // 14, generator=generator),
        image_size=ORIGINAL,
    )
    prediction = predictor.predict(views)
    gaussians = prediction.gaussians
    assert 20 < gaussians.means.shape[1] < 1800  # the Talk2DINO filter kept some, not all

    # (a) every Gaussian's label: softmax over the prompts of features @ buffer, max per group, argmax
    prompt_probs = (gaussians.features[0].double() @ buffer.double()).softmax(-1)
    groups = torch.zeros(len(prompt_probs), len(GROUPS), dtype=torch.float64)
    groups = groups.scatter_reduce(1, PROMPT_GROUP.expand(len(prompt_probs), -1), prompt_probs, reduce="amax")
    assert torch.equal(prediction.gaussian_labels, groups.argmax(-1))
    assert len(prediction.gaussian_labels.unique()) > 1

    # (b) the voxel-level Occ3D labels on the reduced grid
    expected, margin = _voxel_labels(gaussians.means[0], gaussians.covariances[0], gaussians.opacities[0],
                                     prompt_probs, predictor.grid.range)
    got = prediction.labels_occ3d().long()
    assert got.shape == (64, 64, 16)
    clear = margin > 1e-4  # away from a tie or from the density threshold (float32 vs float64)
    assert clear.float().mean() > 0.99
    assert torch.equal(got[clear], expected[clear])
    occupied = expected != FREE
    assert 50 < int(occupied.sum()) < expected.numel() and len(expected[occupied].unique()) > 1


def test_explicit_vocabulary_overrides_the_checkpoint_prototypes(converted, tmp_path: Path) -> None:
    path, _ = converted
    vocabulary = tmp_path / "two.yaml"
    vocabulary.write_text(
        "free_class: sky\nclasses:\n  - {name: car, prompts: [car]}\n  - {name: sky, prompts: [sky]}\n")
    with pytest.raises(ValueError, match="needs prototypes"):  # no text encoder: the checkpoint's do not fit
        OccupancyPredictor.from_checkpoint(path, vocabulary=vocabulary)
    own = tmp_path / "protos.pth"
    torch.save(torch.randn(2, 768), own)
    predictor = OccupancyPredictor.from_checkpoint(path, vocabulary=vocabulary, prototypes=own)
    assert predictor.vocabulary.class_names == ["car", "sky"] and predictor.prototypes_source == "file:protos.pth"
    predictor.reset_vocabulary()
    assert predictor.vocabulary.class_names == ["car", "sky"]  # reset: back to what it started with
    default = OccupancyPredictor.from_checkpoint(path)
    default.set_vocabulary(vocabulary, own)
    default.reset_vocabulary()
    assert len(default.vocabulary.prompts) == 21 and default.prototypes_source.startswith("checkpoint ")


def test_neck_layernorm_eps_is_the_authors() -> None:
    norm = LayerNorm2d(4)
    x = 1e-3 * torch.randn(1, 4, 2, 3, generator=torch.Generator().manual_seed(0))  # variance ~1e-6: eps matters
    mean = x.mean(1, keepdim=True)
    var = x.var(1, unbiased=False, keepdim=True)
    torch.testing.assert_close(norm(x), (x - mean) / torch.sqrt(var + 1e-6))
    assert norm.eps == 1e-6


def test_eval_uses_a_converted_checkpoints_prototypes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """gausstr-eval on a synthetic world of 768-d, patch-14 features with a converted checkpoint and no
    vocabulary or prototype argument: the checkpoint's prototypes are used, and it says so."""
    from gausstr_core.data.synthetic.generate import SynthOptions, generate_dataset
    from gausstr_core.foundation.synthetic import SyntheticTextEncoder

    torch.set_num_threads(1)
    world = tmp_path / "world"
    generate_dataset(world, SynthOptions(scenes=1, samples_per_scene=1, image_size=(240, 135), input_size=INPUT,
                                         sweeps=False, patch_size=14, feature_dim=768))
    prompts = [p for group in GROUPS for p in group]
    buffer = SyntheticTextEncoder(feature_dim=768).encode(prompts).t().contiguous()  # (768, 21), the authors' layout
    write_authors_checkpoint(tmp_path / "authors.pth", buffer)
    config = load_config(Path(__file__).resolve().parents[1] / "config/gausstr_talk2dino.yaml")
    convert_authors_checkpoint(tmp_path / "authors.pth", tmp_path / "converted.pt", config)
    capsys.readouterr()
    rc = eval_main([str(tmp_path / "converted.pt"), "--data", str(world), "--config",
                    str(world / "gausstr_synthetic.yaml"), "--limit", "1", "--no-progress"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "vocabulary 'occ3d', text prototypes: checkpoint converted.pt (converted from authors.pth)" in out.err
    assert "mIoU" in out.out


class FullFrameDepth:
    """Stand-in depth provider: insists on the original 1600x900 frames and their own intrinsics."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, images: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
        assert images.shape[1:] == (3, 900, 1600), f"depth provider got {tuple(images.shape)}, not 1600x900"
        assert images.dtype == torch.float32 and float(images.max()) <= 1.0
        assert torch.allclose(intrinsics, NUSCENES_K.expand_as(intrinsics))  # original-pixel K
        self.calls += 1
        rows = torch.linspace(3.0, 12.0, 900)[:, None] * torch.ones(1600)
        return rows + images[:, 0]  # (N, 900, 1600) m, depends on the image


NUSCENES_K = torch.tensor([[1266.4, 0.0, 816.3], [0.0, 1266.4, 491.5], [0.0, 0.0, 1.0]])


def test_predictor_runs_the_depth_provider_on_the_original_frames(tmp_path: Path) -> None:
    from tiny_world import tiny_config, untrained_checkpoint

    torch.set_num_threads(1)
    config = tiny_config()
    config.data.image_size = (900, 1600)
    checkpoint = untrained_checkpoint(tmp_path / "tiny.pt", config)
    depth = FullFrameDepth()
    predictor = OccupancyPredictor.from_checkpoint(checkpoint, depth_provider=depth)
    rig = nuscenes_rig(1600, 900)[:2]
    images = torch.randint(0, 256, (2, 3, 900, 1600), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    features = torch.randn(2, 64, 14, 25, generator=torch.Generator().manual_seed(1))
    views = Views(images=images, intrinsics=NUSCENES_K.expand(2, 3, 3).clone(),
                  cam2ego=torch.tensor(np.stack([c.cam2ego for c in rig]), dtype=torch.float32), features=features)
    from_provider = predictor.predict(views)
    assert depth.calls == 1
    # the same as handing the predictor the provider's full-resolution maps as given depths
    full = depth(images.float() / 255.0, NUSCENES_K.expand(2, 3, 3))
    given = predictor.predict(Views(images=images, intrinsics=views.intrinsics, cam2ego=views.cam2ego, depths=full,
                                    features=features))
    assert depth.calls == 2  # the call above; none for `given`
    torch.testing.assert_close(from_provider.gaussians.means, given.gaussians.means)
    assert torch.equal(from_provider.labels, given.labels)


@pytest.mark.gpu
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_mixed_precision_training_on_cuda(tiny_train_args: list[str], tmp_path: Path, amp: str) -> None:
    """train.amp=fp16 (the authors') trains with a GradScaler whose state is checkpointed; bf16 without one."""
    from gausstr_core.cli.train import main as train_main
    from gausstr_core.model.checkpoint import load_checkpoint

    argv = [*tiny_train_args, f"train.amp={amp}", "--device", "cuda", "--max-steps", "2", "--no-progress",
            "--work-dir", str(tmp_path)]
    assert train_main(argv) == 0
    state = load_checkpoint(tmp_path / "checkpoints" / "latest.pt")["train_state"]
    assert state["step"] == 2
    if amp == "fp16":
        assert state["scaler"]["scale"] > 0 and "growth_tracker" in state["scaler"]
    else:
        assert state["scaler"] == {}
