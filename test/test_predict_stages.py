"""OccupancyPredictor's public stage methods composed by hand give predict()'s result; stage timing
synchronises CUDA only when profiling is asked for."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from tiny_world import synthetic_world, tiny_config, untrained_checkpoint
from torchvision.io import decode_jpeg, read_file

from gausstr_core import predict as predict_module
from gausstr_core.cli.run_config import run_config
from gausstr_core.data.cache import read_cache_map
from gausstr_core.data.nuscenes import NuScenesReader
from gausstr_core.predict import OccupancyPredictor, Views
from gausstr_core.stage_timer import StageTimer


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One keyframe of a tiny synthetic world (images + depth cache) and an untrained tiny predictor."""
    root = tmp_path_factory.mktemp("stages")
    summary = synthetic_world(root, samples_per_scene=1)
    config = run_config(tiny_config(), str(summary.config_path), None, ["inference.filter_gaussians=true"])
    reader = NuScenesReader(config.data.dataroot, config.data.version, config.data.cameras)
    record = reader.sample_record(reader.split_samples("val")[0])
    cameras = [record.cameras[c] for c in config.data.cameras]
    depths = np.stack([read_cache_map(config.data.cache_root, "synthetic_depth", c.sample_data_token) for c in cameras])
    views = Views(
        images=torch.stack([decode_jpeg(read_file(c.image_path)) for c in cameras]),
        intrinsics=torch.tensor(np.stack([c.intrinsics for c in cameras]), dtype=torch.float32),
        cam2ego=torch.tensor(np.stack([c.cam2ego for c in cameras]), dtype=torch.float32),
        depths=torch.from_numpy(depths.astype(np.float32)),
    )
    predictor = OccupancyPredictor.from_checkpoint(untrained_checkpoint(root / "tiny.pth", config), config=config)
    return {"predictor": predictor, "views": views}


def test_public_stages_compose_to_predict(world: dict) -> None:
    predictor, views = world["predictor"], world["views"]
    expected = predictor.predict(views)
    timer = StageTimer(("model", "depth", "voxelize", "semantics"))
    with torch.inference_mode():
        inputs = predictor.prepare(views)
        inputs = dataclasses.replace(inputs, features=predictor.features(inputs.images))
        everything = predictor.gaussians(inputs, timer)
        gaussians = predictor.select_gaussians(everything)
        vocabulary, occupancy = predictor.semantics(gaussians, timer)
    assert everything.means.shape[1] > gaussians.means.shape[1] > 0  # the filter is on and keeps some
    assert torch.equal(gaussians.means, expected.gaussians.means)
    assert vocabulary is expected.vocabulary
    pairs = ((occupancy.labels, expected.labels), (occupancy.confidence, expected.confidence),
             (occupancy.density, expected.density), (occupancy.gaussian_probabilities, expected.class_probs))
    assert all(torch.equal(ours, theirs) for ours, theirs in pairs)
    assert timer.timings["depth"] == 0.0  # depths were given
    assert all(timer.timings[stage] > 0 for stage in ("model", "voxelize", "semantics"))
    with pytest.raises(ValueError, match="needs prepared views with features"):
        predictor.gaussians(predictor.prepare(views))


def test_predictor_synchronises_only_when_profiling(world: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    predictor, views = world["predictor"], world["views"]
    made = []

    class RecordingTimer(StageTimer):
        def __init__(self, stages, sync=None) -> None:
            made.append(sync)
            super().__init__(stages, sync)

    monkeypatch.setattr(predict_module, "StageTimer", RecordingTimer)
    assert not predictor.profile
    predictor.predict(views)
    predictor.profile = True
    try:
        predictor.predict(views)
    finally:
        predictor.profile = False
    assert made == [None, predictor.device]


def test_stage_timer_synchronises_cuda_only_when_given_a_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    for quiet in (StageTimer(("a", "b")), StageTimer(("a", "b"), torch.device("cpu"))):
        with quiet("a"):
            pass
        with quiet("a"):
            pass
        assert quiet.timings["a"] >= 0 and quiet.timings["b"] == 0.0
    assert calls == []
    profiling = StageTimer(("a",), torch.device("cuda", 0))
    with profiling("a"):
        pass
    assert calls == [torch.device("cuda", 0)] * 2
    with pytest.raises(KeyError, match="unknown stage 'c'"), profiling("c"):
        pass
