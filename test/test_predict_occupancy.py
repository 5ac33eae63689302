"""OccupancyPredictor on a tiny synthetic world with an untrained tiny checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tiny_world import synthetic_world, tiny_config, untrained_checkpoint
from torchvision.io import decode_jpeg, read_file

from gausstr_core.cli.run_config import run_config
from gausstr_core.data.cache import read_cache_map
from gausstr_core.data.dataset import GaussTRDataset
from gausstr_core.data.nuscenes import NuScenesReader
from gausstr_core.predict import STAGES, OccupancyPredictor, Views
from gausstr_core.resources import resolve_resource
from gausstr_core.vocabulary import Vocabulary

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One scene, one keyframe, 240x135 images, caches at the tiny input size; a tiny checkpoint."""
    root = tmp_path_factory.mktemp("world")
    summary = synthetic_world(root, samples_per_scene=1)
    config = run_config(tiny_config(), str(summary.config_path), None, [])
    checkpoint = untrained_checkpoint(root / "tiny.pth", config)
    reader = NuScenesReader(config.data.dataroot, config.data.version, config.data.cameras)
    record = reader.sample_record(reader.split_samples("val")[0])
    cameras = [record.cameras[c] for c in config.data.cameras]
    images = torch.stack([decode_jpeg(read_file(c.image_path)) for c in cameras])
    depths = np.stack([read_cache_map(config.data.cache_root, "synthetic_depth", c.sample_data_token) for c in cameras])
    views = Views(
        images=images,
        intrinsics=torch.tensor(np.stack([c.intrinsics for c in cameras]), dtype=torch.float32),
        cam2ego=torch.tensor(np.stack([c.cam2ego for c in cameras]), dtype=torch.float32),
        depths=torch.from_numpy(depths.astype(np.float32)),
    )
    predictor = OccupancyPredictor.from_checkpoint(checkpoint)
    return {"root": root, "config": config, "checkpoint": checkpoint, "views": views, "record": record,
            "predictor": predictor, "first": predictor.predict(views)}


def test_predict_shapes_dtypes_and_label_rules(world: dict) -> None:
    prediction, config = world["first"], world["config"]
    vocabulary = Vocabulary.load(resolve_resource(config.inference.vocabulary, "vocabulary"))
    grid_dims = (200, 200, 16)
    queries = 6 * config.model.num_queries
    assert prediction.labels.shape == grid_dims and prediction.labels.dtype == torch.uint8
    assert prediction.confidence.shape == grid_dims and prediction.confidence.is_floating_point()
    assert prediction.density.shape == grid_dims and bool((prediction.density >= 0).all())
    assert prediction.gaussians.means.shape == (1, queries, 3)
    assert prediction.gaussians.covariances.shape == (1, queries, 3, 3)
    assert prediction.class_probs.shape == (queries, len(vocabulary.classes))
    assert torch.equal(prediction.gaussian_labels, prediction.class_probs.argmax(-1))
    assert prediction.class_names == vocabulary.class_names
    assert prediction.free_label == vocabulary.class_names.index("sky")
    # Empty voxels are free; the label is always a vocabulary class.
    empty = prediction.density <= config.inference.density_threshold
    assert bool((prediction.labels[empty] == prediction.free_label).all())
    assert int(prediction.labels.max()) < len(vocabulary.classes)
    assert bool((prediction.confidence >= 0).all()) and bool((prediction.confidence <= 1 + 1e-6).all())
    # Occ3D ids through the vocabulary file's own mapping.
    declared = yaml.safe_load(resolve_resource(config.inference.vocabulary, "vocabulary").read_text())["classes"]
    table = {c["name"]: c["occ3d_id"] for c in declared}
    expected = torch.tensor([table[n] for n in vocabulary.class_names], dtype=torch.uint8)[prediction.labels.long()]
    assert torch.equal(prediction.labels_occ3d(), expected)
    assert set(prediction.timings) == set(STAGES)
    assert all(v >= 0 for v in prediction.timings.values())
    assert prediction.timings["depth"] == 0.0  # depths were given
    assert prediction.timings["total"] >= sum(v for k, v in prediction.timings.items() if k != "total") * 0.99


def test_predict_is_deterministic(world: dict) -> None:
    again = world["predictor"].predict(world["views"])
    assert torch.equal(again.labels, world["first"].labels)
    assert torch.equal(again.gaussians.means, world["first"].gaussians.means)
    assert torch.equal(again.density, world["first"].density)


def test_dataset_samples_give_the_same_prediction(world: dict) -> None:
    """A GaussTRDataset sample (network-input images + original_to_input) predicts exactly like the original JPEGs."""
    config = world["config"]
    data = dataclasses.replace(config.data, feature_source="online")
    sample = GaussTRDataset(dataclasses.replace(config, data=data), "val", load_occupancy=False)[0]
    assert sample.token == world["record"].token
    views = Views(images=sample.images, intrinsics=sample.intrinsics, cam2ego=sample.cam2ego, depths=sample.depths,
                  original_to_input=sample.original_to_input)
    prediction = world["predictor"].predict(views)
    assert torch.equal(prediction.labels, world["first"].labels)
    assert torch.equal(prediction.gaussians.means, world["first"].gaussians.means)


def test_nan_depth_means_no_measurement(world: dict) -> None:
    views = world["views"]
    depths = views.depths.clone()
    depths[:, :10] = 0.0
    with_zero = world["predictor"].predict(dataclasses.replace(views, depths=depths))
    depths[:, :10] = float("nan")
    with_nan = world["predictor"].predict(dataclasses.replace(views, depths=depths))
    assert torch.equal(with_zero.labels, with_nan.labels)
    assert bool(torch.isfinite(with_nan.gaussians.means).all())


def test_vocabulary_swap_without_reloading(world: dict) -> None:
    predictor = world["predictor"]
    model = predictor.model
    coarse = Vocabulary.from_dict({
        "name": "coarse", "free_class": "sky",
        "classes": [
            {"name": "vehicle", "prompts": ["car", "truck", "bus"]},
            {"name": "ground", "prompts": ["road", "sidewalk", "grass"]},
            {"name": "structure", "prompts": ["building", "tree"]},
            {"name": "sky", "prompts": ["sky"]},
        ],
    })
    try:
        predictor.set_vocabulary(coarse)
        swapped = predictor.predict(world["views"])
    finally:
        predictor.set_vocabulary(world["config"].inference.vocabulary)
    assert predictor.model is model
    assert swapped.class_names == ["vehicle", "ground", "structure", "sky"] and swapped.free_label == 3
    assert int(swapped.labels.max()) <= 3
    assert not torch.equal(swapped.labels, world["first"].labels)
    assert torch.equal(swapped.gaussians.means, world["first"].gaussians.means)  # same model output
    with pytest.raises(ValueError, match="no Occ3D mapping"):
        swapped.labels_occ3d()
    fresh = OccupancyPredictor.from_checkpoint(world["checkpoint"], vocabulary=coarse).predict(world["views"])
    assert torch.equal(fresh.labels, swapped.labels)
    restored = predictor.predict(world["views"])
    assert torch.equal(restored.labels, world["first"].labels)


def test_precomputed_features_skip_the_provider(world: dict) -> None:
    views, config, record = world["views"], world["config"], world["record"]
    features = np.stack([
        read_cache_map(config.data.cache_root, "synthetic", record.cameras[c].sample_data_token)
        for c in config.data.cameras
    ])
    given = dataclasses.replace(views, images=None, features=torch.from_numpy(features.astype(np.float32)),
                                image_size=tuple(views.images.shape[-2:]))
    prediction = world["predictor"].predict(given)
    assert prediction.timings["features"] == 0.0
    # The cache holds the same provider's float16 output: Gaussians agree to float16 precision.
    torch.testing.assert_close(prediction.gaussians.means, world["first"].gaussians.means, atol=0.05, rtol=0.01)


def test_filter_keeps_only_qualifying_gaussians(world: dict) -> None:
    predictor, config = world["predictor"], world["config"]
    inference = dataclasses.replace(config.inference, filter_gaussians=True, min_opacity=0.5)
    filtered = OccupancyPredictor(
        predictor.model, dataclasses.replace(config, inference=inference), feature_provider={"name": "synthetic"},
        text_encoder={"name": "synthetic"},
    ).predict(world["views"])
    kept = filtered.gaussians.opacities.shape[1]
    everything = world["first"].gaussians
    smallest_variance = torch.diagonal(everything.covariances[0], dim1=-2, dim2=-1).amin(-1)
    expected = (everything.opacities[0] > 0.5) & predictor.grid.contains(everything.means[0])
    expected &= 6 * smallest_variance > inference.min_extent
    assert kept == int(expected.sum())
    assert torch.equal(filtered.gaussians.means[0], everything.means[0][expected])
    assert 0 < kept < everything.opacities.numel()
    assert bool((filtered.gaussians.opacities > 0.5).all())
    assert filtered.class_probs.shape[0] == kept


def test_bad_inputs_name_the_problem(world: dict) -> None:
    predictor, views = world["predictor"], world["views"]
    with pytest.raises(ValueError, match="cam2ego"):
        predictor.predict(dataclasses.replace(views, cam2ego=views.cam2ego[:, :3]))
    with pytest.raises(ValueError, match="image_size"):
        predictor.predict(dataclasses.replace(views, image_size=(10, 10)))
    with pytest.raises(ValueError, match="depth provider"):
        predictor.predict(dataclasses.replace(views, depths=None))
    with pytest.raises(ValueError, match="images or precomputed features"):
        predictor.predict(dataclasses.replace(views, images=None))
    with pytest.raises(ValueError, match="network-input size"):
        predictor.predict(dataclasses.replace(views, original_to_input=torch.eye(3).expand(6, 3, 3)))
    with pytest.raises(FileNotFoundError, match="vocabulary"):
        predictor.set_vocabulary("no/such/vocabulary.yaml")
