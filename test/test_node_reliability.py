"""Reliability of occupancy_node (own process, real rclpy): bad inputs are warned about (throttled),
reported in /diagnostics, and output resumes with good input; checkpoint failures fail configure with
a clear message; lifecycle services and run-time vocabulary changes work."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from gausstr_core.config import Config, GridConfig, load_config
from gausstr_core.model.checkpoint import save_checkpoint
from gausstr_core.model.gausstr import GaussTR

pytestmark = [pytest.mark.ros, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
CAMERAS = ["left", "right"]
HEIGHT, WIDTH = 48, 80
K = np.array([[60.0, 0.0, 40.0], [0.0, 60.0, 24.0], [0.0, 0.0, 1.0]])
PERIOD_S = 0.25


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """Untrained tiny GaussTR for two 80x48 cameras (synthetic features), coarse grid."""
    config = Config(model=load_config(str(REPO / "config" / "tiny.yaml")).model,
                    grid=GridConfig(range=(-12.8, -12.8, -1.0, 12.8, 12.8, 5.4), size=1.6))
    data = config.data
    data.cameras, data.image_size, data.input_size = tuple(CAMERAS), (HEIGHT, WIDTH), (HEIGHT, WIDTH)
    data.feature_provider = {"name": "synthetic", "feature_dim": 64, "patch_size": 8, "seed": 0}
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pth"
    save_checkpoint(path, GaussTR(config.model), config)
    return path


def camera_to_base(yaw: float) -> np.ndarray:
    """Optical frame (z forward, x right, y down) of a camera 1.5 m up, looking along `yaw`."""
    c, s = np.cos(yaw), np.sin(yaw)
    forward, left = np.array([c, s, 0.0]), np.array([-s, c, 0.0])
    out = np.eye(4)
    out[:3, :3] = np.stack([-left, [0.0, 0.0, -1.0], forward], axis=1)
    out[:3, 3] = [0.0, 0.0, 1.5]
    return out


def jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


class Rig:
    """Publishes what a camera driver, a depth node and robot_state_publisher would, with defects on request."""

    def __init__(self, node) -> None:
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
        from tf2_msgs.msg import TFMessage

        from gausstr_ros.qos import OUTPUT_QOS, TF_STATIC_QOS

        self.node = node
        from gausstr_ros.bag_writer import camera_info_topic, depth_topic, image_topic

        self.images = {c: node.create_publisher(CompressedImage, image_topic(c), OUTPUT_QOS) for c in CAMERAS}
        self.infos = {c: node.create_publisher(CameraInfo, camera_info_topic(c), OUTPUT_QOS) for c in CAMERAS}
        self.depths = {c: node.create_publisher(Image, depth_topic(c), OUTPUT_QOS) for c in CAMERAS}
        self.tf_static = node.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        self.jpegs = [jpeg(i) for i in range(3)]
        self.stamp_ns = 1_000_000_000_000
        self.sets = 0

    def publish_tf(self) -> None:
        from tf2_msgs.msg import TFMessage

        from gausstr_ros.bag_writer import transform_msg

        self.tf_static.publish(TFMessage(transforms=[
            transform_msg("base_link", c, camera_to_base(yaw), 0) for c, yaw in zip(CAMERAS, (0.0, np.pi))]))

    def publish_set(self, image: dict | None = None, depth: dict | None = None, info: dict | None = None,
                    cameras: list[str] = CAMERAS, stamp_ns: int | None = None) -> None:
        """One set 10 ms apart per camera; image/depth/info: camera -> replacement fields."""
        from sensor_msgs.msg import CompressedImage

        from gausstr_ros.image_codec import camera_info_msg, depth_image_msg
        from gausstr_ros.stamps import make_header

        if stamp_ns is None:
            self.stamp_ns += int(PERIOD_S * 1e9)
            stamp_ns = self.stamp_ns
        self.sets += 1
        for i, cam in enumerate(CAMERAS):
            if cam not in cameras:
                continue
            header = make_header(cam, stamp_ns + i * 10_000_000)
            info_msg = camera_info_msg(K, WIDTH, HEIGHT, header)
            for name, value in (info or {}).get(cam, {}).items():
                setattr(info_msg, name, value)
            self.infos[cam].publish(info_msg)
            msg = CompressedImage(header=header, format="jpeg", data=self.jpegs[self.sets % 3])
            for name, value in (image or {}).get(cam, {}).items():
                setattr(msg, name, value)
            self.images[cam].publish(msg)
            depth_msg = depth_image_msg(np.full((HEIGHT, WIDTH), 12.0, np.float32), header)
            for name, value in (depth or {}).get(cam, {}).items():
                setattr(depth_msg, name, value)
            self.depths[cam].publish(depth_msg)


def spin_for(node, seconds: float) -> None:
    import rclpy

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.02)


def wait_output(node, recorder, rig: Rig, before: int, what: str, timeout_s: float = 60.0, **defects) -> None:
    """Publish good sets (defects only in the first) until a new ~/occupancy arrives after `before` outputs."""
    deadline = time.monotonic() + timeout_s
    first = True
    while recorder.count("occupancy") <= before:
        assert time.monotonic() < deadline, f"no output after {what}"
        rig.publish_set(**(defects if first else {}))
        first = False
        spin_for(node, PERIOD_S)


def wait_log(proc, text: str, node, recorder, timeout_s: float = 20.0) -> str:
    deadline = time.monotonic() + timeout_s
    while text not in proc.log():
        assert time.monotonic() < deadline, (f"{text!r} not in the node log:\n{proc.log()}\n"
                                             f"diagnostics: {recorder.diagnostic_values()}")
        spin_for(node, 0.2)
    return proc.log()


@pytest.fixture
def ros(ros_domain_id):
    import rclpy

    rclpy.init()
    node = rclpy.create_node("reliability_tester")
    yield node
    node.destroy_node()
    rclpy.shutdown()


def start_node(checkpoint: Path, log_path: Path, **params):
    from gausstr_ros.replay_session import NodeProcess

    return NodeProcess(checkpoint, CAMERAS, log_path, depth_source="topic", sync_slop_s=0.05, **params)


def test_bad_inputs_are_reported_and_output_resumes(checkpoint, ros, tmp_path):
    from gausstr_ros.output_recorder import OutputRecorder
    from gausstr_ros.replay_session import input_topics, spin_until, wait_for_subscriptions

    node = ros
    recorder = OutputRecorder(node)
    rig = Rig(node)
    with start_node(checkpoint, tmp_path / "node.log") as proc:
        assert wait_for_subscriptions(node, input_topics(CAMERAS, depth=True), 120), proc.log()
        # A TF that never comes: sets wait (no output), a throttled warning after the grace period.
        for _ in range(14):
            rig.publish_set()
            spin_for(node, PERIOD_S)
        assert recorder.count("occupancy") == 0
        wait_log(proc, "tf (left): no transform base_link <- left yet", node, recorder)
        assert any("waiting for calibration" in m for m in recorder.diagnostic_messages())
        rig.publish_tf()
        wait_output(node, recorder, rig, 0, "the transforms came")

        cases = {  # what: (defects, log text, diagnostics problem key)
            "corrupt JPEG": ({"image": {"left": {"data": rig.jpegs[0][:40] + b"\x00" * 200}}}, "corrupt JPEG",
                             "bad image left"),
            "wrong image encoding": ({"image": {"right": {"data": b"GIF89a" + b"\x00" * 64}}},
                                     "neither JPEG nor PNG", "bad image right"),
            "wrong depth encoding": ({"depth": {"left": {"encoding": "rgb8"}}}, "depth Image encoding 'rgb8'",
                                     "bad depth left"),
            "zero-size image": ({"image": {"left": {"data": b""}}}, "is empty", "bad image left"),
            "NaN CameraInfo": ({"info": {"right": {"k": [float("nan")] * 9}}}, "K contains NaN", "camera_info right"),
        }
        for what, (defects, message, key) in cases.items():
            before, counted = recorder.count("occupancy"), int(recorder.diagnostic_values().get(key, 0))
            rig.publish_set(**defects)
            wait_log(proc, message, node, recorder)
            wait_output(node, recorder, rig, before, what)
            assert spin_until(node, lambda k=key, c=counted: int(recorder.diagnostic_values().get(k, 0)) > c, 5), what

        # Out-of-order stamps: an image older than the last one is dropped and counted.
        before = recorder.count("occupancy")
        rig.publish_set(stamp_ns=rig.stamp_ns - 10 * int(PERIOD_S * 1e9))
        wait_log(proc, "is not newer than the previous one", node, recorder)
        wait_output(node, recorder, rig, before, "out-of-order stamps")

        # A missing camera: no sets, the camera is reported stale; output resumes when it is back.
        before = recorder.count("occupancy")
        for _ in range(10):
            rig.publish_set(cameras=["left"])
            spin_for(node, PERIOD_S)
        wait_log(proc, "stale camera (right)", node, recorder)
        assert any("stale cameras: right" in m for m in recorder.diagnostic_messages())
        wait_output(node, recorder, rig, recorder.count("occupancy"), "the camera came back")

        # A 10x burst: stale sets are dropped (latest only), the node keeps up and stays responsive.
        before = recorder.count("occupancy")
        for _ in range(40):
            rig.publish_set()
            spin_for(node, PERIOD_S / 10)
        spin_for(node, 3.0)
        burst_outputs = recorder.count("occupancy") - before
        assert 1 <= burst_outputs < 40
        spin_for(node, 1.5)
        values = recorder.diagnostic_values()
        assert int(values["sets dropped (model busy)"]) > 0, values
        wait_output(node, recorder, rig, recorder.count("occupancy"), "the burst")

        assert proc.alive(), proc.log()
        log = proc.log()
        # throttled: the same problem is not logged once per message
        assert log.count("no transform base_link <- left yet") <= 3, log
        assert proc.stop() == 0, proc.log()



def call(node, srv_type, name: str, request, timeout_s: float = 30.0):
    from gausstr_ros.replay_session import spin_until

    client = node.create_client(srv_type, f"/gausstr_occupancy/{name}")
    assert client.wait_for_service(timeout_sec=timeout_s), name
    future = client.call_async(request)
    assert spin_until(node, future.done, timeout_s), name
    node.destroy_client(client)
    return future.result()


def set_parameter(node, name: str, value):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    return call(node, SetParameters, "set_parameters", request).results[0]


def transition(node, transition_id: int) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    return call(node, ChangeState, "change_state", ChangeState.Request(transition=Transition(id=transition_id))).success


def state(node) -> str:
    from lifecycle_msgs.srv import GetState

    return call(node, GetState, "get_state", GetState.Request()).current_state.label


def test_checkpoint_failures_lifecycle_and_run_time_vocabulary(checkpoint, ros, tmp_path):
    from lifecycle_msgs.msg import Transition

    from gausstr_ros.output_recorder import OutputRecorder, occupancy_labels

    node = ros
    missing, corrupt = tmp_path / "missing.pth", tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint" * 20)
    recorder = OutputRecorder(node)
    rig = Rig(node)
    with start_node(missing, tmp_path / "node.log") as proc:
        wait_log(proc, f"configure failed: cannot load checkpoint '{missing}': checkpoint not found", node, recorder)
        assert state(node) == "unconfigured"
        assert set_parameter(node, "checkpoint", str(corrupt)).successful
        assert not transition(node, Transition.TRANSITION_CONFIGURE)
        wait_log(proc, f"cannot load checkpoint '{corrupt}'", node, recorder)
        assert "corrupt or not a torch file" in proc.log()
        assert state(node) == "unconfigured" and proc.alive()

        assert set_parameter(node, "checkpoint", str(checkpoint)).successful
        assert transition(node, Transition.TRANSITION_CONFIGURE) and state(node) == "inactive"
        assert transition(node, Transition.TRANSITION_ACTIVATE) and state(node) == "active"
        rig.publish_tf()
        wait_output(node, recorder, rig, 0, "activation")
        assert len(recorder.messages["occupancy"][-1].msg.class_names) == 16

        rejected = set_parameter(node, "vocabulary_prompts", "car car; road")
        assert not rejected.successful and "vocabulary_prompts" in rejected.reason
        assert set_parameter(node, "vocabulary_prompts", "car: car, van; road: road; sky: sky").successful
        before = recorder.count("occupancy")
        wait_output(node, recorder, rig, before, "the vocabulary change")
        msg = recorder.messages["occupancy"][-1].msg
        assert list(msg.class_names) == ["car", "road", "sky"] and msg.free_label == 2
        assert occupancy_labels(msg).max() <= 2
        assert "vocabulary now 'inline'" in proc.log() and "configured:" in proc.log()
        assert proc.log().count("configured:") == 1  # no model reload

        assert transition(node, Transition.TRANSITION_DEACTIVATE) and state(node) == "inactive"
        count = recorder.count("occupancy")
        for _ in range(6):
            rig.publish_set()
            spin_for(node, PERIOD_S)
        assert recorder.count("occupancy") == count
        assert transition(node, Transition.TRANSITION_CLEANUP) and state(node) == "unconfigured"
        assert proc.stop() == 0, proc.log()
