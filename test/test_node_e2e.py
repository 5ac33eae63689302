"""End to end: synthetic world -> gausstr-bag (keyframes, depth) -> gausstr-play -> occupancy_node (own
process) -> a subscriber here. Every output arrives in base_link with the first camera's stamp, and
the published labels equal OccupancyPredictor's on the same images, for a six- and a five-camera rig."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from gausstr_core.config import GridConfig, load_config
from gausstr_core.data.nuscenes import NuScenesReader
from gausstr_core.data.synthetic.generate import SynthOptions, generate_dataset
from gausstr_core.data.synthetic.rig import nuscenes_rig
from gausstr_core.model.checkpoint import save_checkpoint
from gausstr_core.model.gausstr import GaussTR
from gausstr_core.predict import OccupancyPredictor
from gausstr_core.prediction_io import load_sample_views
from gausstr_ros.node_outputs import OUTPUT_TOPICS
from gausstr_ros.tools import bag_cli
from gausstr_ros.tools.output_recorder import header_of, occupancy_labels

pytestmark = [pytest.mark.ros, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
SAMPLES = 2
RIGS = {
    "six": [c.name for c in nuscenes_rig()],
    "five": [c.name for c in nuscenes_rig() if c.name != "CAM_BACK"],
}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[str, Path]:
    """A tiny keyframe-only world per rig (160x90 images, 8-pixel feature patches) and its bag."""
    out = {}
    for name, cameras in RIGS.items():
        root = tmp_path_factory.mktemp(f"world_{name}")
        rig = [c for c in nuscenes_rig(160, 90) if c.name in cameras]
        generate_dataset(root / "data", SynthOptions(scenes=1, samples_per_scene=SAMPLES, sweeps=False, patch_size=8,
                                                     rig=rig))
        bag_cli.main([str(root / "bag"), "--config", str(root / "data" / "gausstr_synthetic.yaml"),
                      "--depth", "cache", "--quiet"])
        out[name] = root
    return out


@pytest.fixture(scope="module")
def checkpoint(worlds, tmp_path_factory) -> Path:
    """Untrained tiny GaussTR with the world's data settings and a coarse grid (fast voxelisation)."""
    config = load_config(str(worlds["six"] / "data" / "gausstr_synthetic.yaml"))
    config = dataclasses.replace(config, model=load_config(str(REPO / "config" / "tiny.yaml")).model,
                                 grid=GridConfig(range=(-20.0, -20.0, -1.0, 20.0, 20.0, 5.4), size=0.8))
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pth"
    save_checkpoint(path, GaussTR(config.model), config)
    return path


def expected_outputs(world: Path, checkpoint: Path, cameras: list[str]) -> dict[int, np.ndarray]:
    """First camera's stamp (ns) -> OccupancyPredictor labels on the decoded original JPEGs + depth cache."""
    config = load_config(str(world / "data" / "gausstr_synthetic.yaml"))
    data = dataclasses.replace(config.data, cameras=tuple(cameras))
    predictor = OccupancyPredictor.from_checkpoint(checkpoint)
    reader = NuScenesReader(data.dataroot, data.version, data.cameras)
    out = {}
    for scene in reader.scene_names:
        for token in reader.scene_samples(scene):
            record = reader.sample_record(token)
            labels = predictor.predict(load_sample_views(record, data)).labels.numpy()
            out[record.cameras[cameras[0]].timestamp * 1000] = labels
    return out


@pytest.mark.parametrize("rig", list(RIGS))
def test_bag_replay_through_the_node_matches_the_predictor(rig, worlds, checkpoint, tmp_path, ros_domain_id):
    import rclpy

    from gausstr_ros.tools.output_recorder import OutputRecorder
    from gausstr_ros.tools.replay_session import NodeProcess, replay_bag

    cameras = RIGS[rig]
    expected = expected_outputs(worlds[rig], checkpoint, cameras)
    assert len(expected) == SAMPLES
    rclpy.init()
    node = rclpy.create_node("e2e_listener")
    try:
        recorder = OutputRecorder(node)
        with NodeProcess(checkpoint, cameras, tmp_path / "node.log", depth_source="topic") as proc:
            result = replay_bag(node, recorder, worlds[rig] / "bag", cameras, expected_sets=SAMPLES, depth=True,
                                timeout_s=120)
            log = proc.log()
            assert proc.alive(), log
        assert result.complete, f"node log:\n{log}\nplay log:\n{result.play_log}"
    finally:
        node.destroy_node()
        rclpy.shutdown()

    for key in OUTPUT_TOPICS:
        assert sorted(recorder.stamps_ns(key)) == sorted(expected), key
        assert {header_of(r.msg).frame_id for r in recorder.messages[key]} == {"base_link"}, key
    for key in ("debug/processing_time_ms", "debug/pipeline_latency_ms"):
        assert recorder.count(key) == SAMPLES and all(r.msg.data > 0 for r in recorder.messages[key])
    for received in recorder.messages["occupancy"]:
        stamp = received.msg.header.stamp.sec * 10**9 + received.msg.header.stamp.nanosec
        np.testing.assert_array_equal(occupancy_labels(received.msg), expected[stamp])
    assert recorder.diagnostic_values()["sets processed"] == str(SAMPLES)
