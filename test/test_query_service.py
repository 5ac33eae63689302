"""~/query and the standing queries on a lifecycle node in this process, asked through real rclpy
service calls, on the hand-made street scene (test/query_scene.py)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from query_scene import CAR_AT, PERSON_AT, street_prediction

from gausstr_core.query import SceneQuery
from gausstr_ros.query_service import parse_standing_queries

pytestmark = pytest.mark.ros


class StandInPredictor:
    """OccupancyPredictor.query's contract over a fixed scene; no text encoder (only vocabulary prompts)."""

    def __init__(self, prototypes: torch.Tensor, fail: bool = False) -> None:
        self.prototypes, self.fail = prototypes, fail
        self.engine = SceneQuery(None)
        self.calls = 0

    def query(self, prediction, prompts, threshold, max_clusters):
        self.calls += 1
        if self.fail:
            raise RuntimeError("voxeliser exploded")
        return self.engine.query(prediction, prompts, self.prototypes, 4e-2, threshold, max_clusters)


def test_parse_standing_queries() -> None:
    assert parse_standing_queries(" car; fire hydrant ;; car ;") == ["car", "fire hydrant"]
    assert parse_standing_queries("") == []


def test_query_service_statuses_answers_and_standing_topics(ros_domain_id: int) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.lifecycle import LifecycleNode
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header

    from gausstr_ros.msg import QueryResult, QueryResults
    from gausstr_ros.query_service import QueryService
    from gausstr_ros.srv import Query

    prediction, prototypes, _ = street_prediction()
    rclpy.init()
    node = LifecycleNode("query_test")
    service = QueryService(node)
    client_node = rclpy.create_node("query_client")
    client = client_node.create_client(Query, "/query_test/query")
    received: dict[str, list] = {"clusters": [], "relevance": []}
    client_node.create_subscription(QueryResults, "/query_test/query/clusters", received["clusters"].append, 10)
    client_node.create_subscription(PointCloud2, "/query_test/query/relevance", received["relevance"].append, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()

    def call(prompts: list[str], threshold: float = 0.0, max_clusters: int = 0) -> Query.Response:
        future = client.call_async(Query.Request(prompts=prompts, threshold=threshold, max_clusters=max_clusters))
        rclpy.spin_until_future_complete(client_node, future, timeout_sec=20)
        assert future.done(), "no answer from ~/query"
        return future.result()

    try:
        assert client.wait_for_service(timeout_sec=20)
        assert call(["car"]).status == Query.Response.NOT_ACTIVE
        node.trigger_configure()
        node.trigger_activate()
        response = call(["car"])
        assert response.status == Query.Response.NO_PREDICTION and "no prediction" in response.message

        predictor = StandInPredictor(prototypes)
        header = Header(frame_id="base_link")
        header.stamp.sec = 42
        service.on_prediction(predictor, prediction, header, "car; giraffe", 1000)
        deadline = time.monotonic() + 20
        while (not received["clusters"] or not received["relevance"]) and time.monotonic() < deadline:
            rclpy.spin_once(client_node, timeout_sec=0.1)
        (standing,), (cloud,) = received["clusters"], received["relevance"]
        assert [r.prompt for r in standing.results] == ["car", "giraffe"] and standing.header.stamp.sec == 42
        car, giraffe = standing.results
        assert car.status == QueryResult.OK and car.clusters and not car.points.data
        assert giraffe.status == QueryResult.PROMPT_ERROR and "no text encoder" in giraffe.message
        assert [f.name for f in cloud.fields] == ["x", "y", "z", "relevance", "prompt"] and cloud.width > 0
        points = np.frombuffer(bytes(cloud.data), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                                          ("relevance", "<f4"), ("prompt", "<u4")])
        assert set(points["prompt"].tolist()) == {0} and bool((points["relevance"] > 0.5).all())

        calls = predictor.calls
        response = call(["car", "person", "giraffe"])
        assert predictor.calls == calls + 2  # person and giraffe: "car" was answered by the standing query
        assert response.status == Query.Response.PROMPT_ERROR and "giraffe" in response.message
        assert response.header.stamp.sec == 42 and response.header.frame_id == "base_link"
        car, person, giraffe = response.results
        for result, at in ((car, CAR_AT), (person, PERSON_AT)):
            assert result.status == QueryResult.OK
            top = result.clusters[0].centroid
            assert np.hypot(np.hypot(top.x - at[0], top.y - at[1]), top.z - at[2]) < 0.4
            assert [f.name for f in result.points.fields] == ["x", "y", "z", "relevance"]
            assert result.points.width == sum(c.voxel_count for c in result.clusters)  # five clusters or fewer
        assert giraffe.status == QueryResult.PROMPT_ERROR and not giraffe.clusters and "giraffe" in giraffe.message

        assert len(call(["car"], max_clusters=1).results[0].clusters) == 1
        assert call(["car"], threshold=0.99999).results[0].clusters == []
        for bad in ({"prompts": []}, {"prompts": ["car", " "]}, {"prompts": ["car"], "threshold": 1.5},
                    {"prompts": ["car"], "threshold": float("nan")}):
            response = call(**bad)
            assert response.status == Query.Response.BAD_REQUEST and response.message, bad

        service.on_prediction(StandInPredictor(prototypes, fail=True), prediction, header, "", 1000)
        response = call(["road"])
        assert response.status == Query.Response.FAILED and "voxeliser exploded" in response.message

        node.trigger_deactivate()
        assert call(["car"]).status == Query.Response.NOT_ACTIVE
    finally:
        executor.shutdown()
        node.destroy_node()
        client_node.destroy_node()
        rclpy.shutdown()


def test_rviz_config_colours_the_relevance_cloud_by_relevance(repo_root) -> None:
    import yaml

    config = yaml.safe_load((repo_root / "config" / "gausstr.rviz").read_text())
    displays = {d["Topic"]["Value"]: d for d in config["Visualization Manager"]["Displays"] if "Topic" in d}
    cloud = displays["/gausstr_occupancy/query/relevance"]
    assert cloud["Class"] == "rviz_default_plugins/PointCloud2" and cloud["Enabled"]
    assert cloud["Color Transformer"] == "Intensity" and cloud["Channel Name"] == "relevance"
