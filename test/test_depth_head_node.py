"""The occupancy node with `depth_source: model`: a bag without depth topics -> the node (own process,
real rclpy) -> labels equal to OccupancyPredictor's with the checkpoint's own depth head."""

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
from gausstr_ros.tools import bag_cli
from gausstr_ros.tools.output_recorder import occupancy_labels

pytestmark = [pytest.mark.ros]
REPO = Path(__file__).resolve().parents[1]
SAMPLES = 2


def test_auto_picks_the_model_depth_when_the_checkpoint_has_a_head() -> None:
    from gausstr_ros.node_params import resolve_depth_source

    assert resolve_depth_source("auto", checkpoint_has_provider=True, checkpoint_has_head=True)[0] == "model"
    assert resolve_depth_source("auto", checkpoint_has_provider=True, checkpoint_has_head=False)[0] == "provider"
    assert resolve_depth_source("model", checkpoint_has_provider=False, checkpoint_has_head=True)[0] == "model"
    with pytest.raises(ValueError, match="no depth head"):
        resolve_depth_source("model", checkpoint_has_provider=True, checkpoint_has_head=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A keyframe-only world (160x90 images, patch-8 features), its bag without depth, and an untrained
    tiny GaussTR with a depth head, the world's data settings and a coarse grid (fast voxelisation)."""
    root = tmp_path_factory.mktemp("depth_head_node")
    cameras = [c.name for c in nuscenes_rig()]
    generate_dataset(root / "data", SynthOptions(scenes=1, samples_per_scene=SAMPLES, sweeps=False, patch_size=8,
                                                 rig=nuscenes_rig(160, 90)))
    world_yaml = str(root / "data" / "gausstr_synthetic.yaml")
    bag_cli.main([str(root / "bag"), "--config", world_yaml, "--depth", "none", "--quiet"])
    config = load_config(world_yaml)
    model = dataclasses.replace(load_config(str(REPO / "config" / "tiny.yaml")).model, depth_head=True,
                                depth_head_dims=16)
    config = dataclasses.replace(config, model=model, grid=GridConfig(range=(-20.0, -20.0, -1.0, 20.0, 20.0, 5.4),
                                                                      size=0.8))
    torch.manual_seed(0)
    checkpoint = root / "head.pth"
    save_checkpoint(checkpoint, GaussTR(config.model), config)
    return {"root": root, "cameras": cameras, "config": config, "checkpoint": checkpoint}


def expected_labels(world: dict) -> dict[int, np.ndarray]:
    """First camera's stamp (ns) -> the predictor's labels from the JPEGs alone, depth from the head."""
    data = world["config"].data
    predictor = OccupancyPredictor.from_checkpoint(world["checkpoint"], model_depth=True)
    reader = NuScenesReader(data.dataroot, data.version, data.cameras)
    out = {}
    for token in (t for scene in reader.scene_names for t in reader.scene_samples(scene)):
        record = reader.sample_record(token)
        stamp = record.cameras[world["cameras"][0]].timestamp * 1000
        out[stamp] = predictor.predict(load_sample_views(record, data, depth=False)).labels.numpy()
    return out


@pytest.mark.slow
def test_node_runs_on_its_own_depth_without_depth_topics(world: dict, tmp_path: Path, ros_domain_id) -> None:
    import rclpy

    from gausstr_ros.tools.output_recorder import OutputRecorder
    from gausstr_ros.tools.replay_session import NodeProcess, replay_bag

    expected = expected_labels(world)
    assert len(expected) == SAMPLES
    cameras = world["cameras"]
    rclpy.init()
    node = rclpy.create_node("depth_head_listener")
    try:
        recorder = OutputRecorder(node)
        with NodeProcess(world["checkpoint"], cameras, tmp_path / "node.log", depth_source="model") as proc:
            result = replay_bag(node, recorder, world["root"] / "bag", cameras, expected_sets=SAMPLES, depth=False,
                                timeout_s=120)
            log = proc.log()
            assert proc.alive(), log
            # No depth topic exists: the node subscribed to none.
            assert not [t for t, _ in node.get_topic_names_and_types() if t.endswith("/depth")], log
        assert result.complete, f"node log:\n{log}\nplay log:\n{result.play_log}"
    finally:
        node.destroy_node()
        rclpy.shutdown()
    assert "depth from model" in log, log
    received = recorder.messages["occupancy"]
    assert len(received) == SAMPLES
    for message in received:
        stamp = message.msg.header.stamp.sec * 10**9 + message.msg.header.stamp.nanosec
        np.testing.assert_array_equal(occupancy_labels(message.msg), expected[stamp])
