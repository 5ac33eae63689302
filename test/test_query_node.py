"""~/query on a running occupancy node (own process, real rclpy) for a synthetic keyframe.

The node's network is replaced by the ground-truth oracle of benchmarks/oracle_synthetic.py
(test/oracle_node.py): Gaussians fitted to the keyframe's true voxels with their class's feature,
i.e. what a perfect model would output; a trained tiny checkpoint would need minutes of CPU
training. The bag carries the world's true depth. The top cluster for "car" and for "pedestrian"
must lie within 1 m of a ground-truth cluster of that class (centroid of a 26-connected component
of its camera-visible voxels); an absent concept gets an OK status and no cluster at the default
threshold; the standing queries come out on ~/query/clusters and ~/query/relevance.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from gausstr_core.config import load_config
from gausstr_core.data.nuscenes import NuScenesReader
from gausstr_core.data.occ3d import OCC3D_CLASSES, load_occ3d, occ3d_path
from gausstr_core.data.synthetic.generate import SynthOptions, generate_dataset
from gausstr_core.data.synthetic.rig import nuscenes_rig
from gausstr_core.model.checkpoint import save_checkpoint
from gausstr_core.model.gausstr import GaussTR
from gausstr_ros.tools import bag_cli

pytestmark = [pytest.mark.ros, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
CAMERAS = [c.name for c in nuscenes_rig()]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """One keyframe (160x90 images, patch-8 caches), its bag with the true depth, an untrained tiny
    checkpoint with 300 queries per view holding the world's config (the oracle replaces its network;
    at the tiny config's 128 per view its blobs merge pedestrians 3 m apart)."""
    root = tmp_path_factory.mktemp("query_world")
    generate_dataset(root / "data", SynthOptions(scenes=1, samples_per_scene=1, sweeps=False, patch_size=8,
                                                 rig=nuscenes_rig(160, 90)))
    world_config = root / "data" / "gausstr_synthetic.yaml"
    bag_cli.main([str(root / "bag"), "--config", str(world_config), "--depth", "cache",
                  "--depth-kind", "synthetic_depth_gt", "--quiet"])
    config = load_config(str(world_config))
    tiny = load_config(str(REPO / "config" / "tiny.yaml")).model
    config = dataclasses.replace(config, model=dataclasses.replace(tiny, num_queries=300))  # the authors' count
    torch.manual_seed(0)
    save_checkpoint(root / "tiny.pth", GaussTR(config.model), config)
    return root


def truth_clusters(world: Path, occ3d_id: int) -> list[np.ndarray]:
    """Centroids (ego frame, m) of the 26-connected components of the class's camera-visible voxels."""
    config = load_config(str(world / "data" / "gausstr_synthetic.yaml"))
    reader = NuScenesReader(config.data.dataroot, config.data.version, config.data.cameras)
    (token,) = reader.split_samples(config.data.val_split)
    truth = load_occ3d(occ3d_path(config.data.occ_root, reader.sample_record(token).scene, token))
    grid = config.grid.build()
    labels, count = ndimage.label((truth.semantics == occ3d_id) & truth.mask_camera, structure=np.ones((3, 3, 3)))
    return [np.asarray(grid.min_corner) + (np.argwhere(labels == i).mean(0) + 0.5) * grid.size
            for i in range(1, count + 1)]


def test_query_service_finds_cars_and_pedestrians_on_a_running_node(world, tmp_path, ros_domain_id):
    import rclpy
    from sensor_msgs.msg import PointCloud2

    from gausstr_ros.msg import QueryResult, QueryResults
    from gausstr_ros.srv import Query
    from gausstr_ros.tools.output_recorder import OutputRecorder
    from gausstr_ros.tools.replay_session import NodeProcess, replay_bag, spin_until

    rclpy.init()
    node = rclpy.create_node("query_node_test")
    standing: dict[str, list] = {"clusters": [], "relevance": []}
    node.create_subscription(QueryResults, "/gausstr_occupancy/query/clusters", standing["clusters"].append, 10)
    node.create_subscription(PointCloud2, "/gausstr_occupancy/query/relevance", standing["relevance"].append, 10)
    client = node.create_client(Query, "/gausstr_occupancy/query")
    try:
        recorder = OutputRecorder(node)
        with NodeProcess(world / "tiny.pth", CAMERAS, tmp_path / "node.log",
                         executable=[sys.executable, str(REPO / "test" / "oracle_node.py")], depth_source="topic",
                         standing_queries="car; giraffe") as proc:
            assert client.wait_for_service(timeout_sec=120), proc.log()
            early = client.call_async(Query.Request(prompts=["car"]))
            assert spin_until(node, early.done, 60), proc.log()
            assert early.result().status in (Query.Response.NO_PREDICTION, Query.Response.NOT_ACTIVE)
            result = replay_bag(node, recorder, world / "bag", CAMERAS, expected_sets=1, depth=True, timeout_s=180)
            assert result.complete, f"node log:\n{proc.log()}\nplay log:\n{result.play_log}"
            spin_until(node, lambda: standing["clusters"] and standing["relevance"], 30)
            future = client.call_async(Query.Request(prompts=["car", "pedestrian", "giraffe", "fire hydrant"]))
            assert spin_until(node, future.done, 60), proc.log()
            response = future.result()
            assert proc.alive(), proc.log()
    finally:
        node.destroy_node()
        rclpy.shutdown()

    assert response.status == Query.Response.OK, response.message
    assert response.header.frame_id == "base_link"
    car, pedestrian, giraffe, hydrant = response.results
    for result, name in ((car, "car"), (pedestrian, "pedestrian")):
        assert result.status == QueryResult.OK and result.clusters, name
        top = result.clusters[0].centroid
        distance = min(np.linalg.norm(np.array([top.x, top.y, top.z]) - c)
                       for c in truth_clusters(world, OCC3D_CLASSES.index(name)))
        assert distance <= 1.0, (name, distance)
        assert result.points.width > 0 and "relevance" in [f.name for f in result.points.fields]
    for absent in (giraffe, hydrant):
        assert absent.status == QueryResult.OK and absent.clusters == [] and absent.max_relevance < 0.5
        assert absent.points.width == 0

    (published,) = standing["clusters"][:1]
    assert [r.prompt for r in published.results] == ["car", "giraffe"]
    assert published.results[0].clusters[0].centroid == car.clusters[0].centroid
    assert published.results[1].clusters == []
    cloud = standing["relevance"][0]
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "relevance", "prompt"]
    assert cloud.width == car.points.width  # every standing point is a car voxel (giraffe has none)
