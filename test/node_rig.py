"""Shared by the node tests (node in its own process, real rclpy): a two-camera 80x48 rig publishing what a
camera driver, a depth node and robot_state_publisher would (defects on request), an untrained tiny
checkpoint for it, and spin/wait helpers."""

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

REPO = Path(__file__).resolve().parents[1]
CAMERAS = ["left", "right"]
HEIGHT, WIDTH = 48, 80
K = np.array([[60.0, 0.0, 40.0], [0.0, 60.0, 24.0], [0.0, 0.0, 1.0]])
PERIOD_S = 0.25


@pytest.fixture(scope="module", name="checkpoint")
def checkpoint_fixture(tmp_path_factory) -> Path:
    """Fixture `checkpoint`: the tiny checkpoint below, once per test module."""
    return tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pth")


@pytest.fixture(name="ros")
def ros_fixture(ros_domain_id):
    """Fixture `ros`: rclpy initialised in this (the tester's) process, with one node."""
    import rclpy

    rclpy.init()
    node = rclpy.create_node("node_tester")
    yield node
    node.destroy_node()
    rclpy.shutdown()


def tiny_checkpoint(path: Path) -> Path:
    """Untrained tiny GaussTR for two 80x48 cameras (synthetic features), coarse grid."""
    config = Config(model=load_config(str(REPO / "config" / "tiny.yaml")).model,
                    grid=GridConfig(range=(-12.8, -12.8, -1.0, 12.8, 12.8, 5.4), size=1.6))
    data = config.data
    data.cameras, data.image_size, data.input_size = tuple(CAMERAS), (HEIGHT, WIDTH), (HEIGHT, WIDTH)
    data.feature_provider = {"name": "synthetic", "feature_dim": 64, "patch_size": 8, "seed": 0}
    torch.manual_seed(0)
    save_checkpoint(path, GaussTR(config.model), config)
    return path


def camera_to_ego(yaw: float) -> np.ndarray:
    """Optical frame (z forward, x right, y down) of a camera 1.5 m up, looking along `yaw`."""
    c, s = np.cos(yaw), np.sin(yaw)
    forward, left = np.array([c, s, 0.0]), np.array([-s, c, 0.0])
    out = np.eye(4)
    out[:3, :3] = np.stack([-left, [0.0, 0.0, -1.0], forward], axis=1)
    out[:3, 3] = [0.0, 0.0, 1.5]
    return out


def palette_image(seed: int, height: int = HEIGHT, width: int = WIDTH, block: int = 8, noise: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: blocks of the synthetic world's palette colours (what its feature provider reads),
    plus uniform noise of +- `noise` levels."""
    from gausstr_core.synthetic_palette import palette_tensor

    rng = np.random.default_rng(seed)
    colours = (palette_tensor().numpy() * 255).round()
    blocks = colours[rng.integers(0, len(colours), (-(-height // block), -(-width // block)))]
    image = blocks.repeat(block, 0).repeat(block, 1)[:height, :width]
    if noise:
        image = image + rng.integers(-noise, noise + 1, image.shape)
    return image.clip(0, 255).astype(np.uint8)


def jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(palette_image(seed)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


class Rig:
    """Publishes what a camera driver, a depth node and robot_state_publisher would, with defects on request."""

    def __init__(self, node) -> None:
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
        from tf2_msgs.msg import TFMessage

        from gausstr_ros.qos import OUTPUT_QOS, TF_STATIC_QOS

        self.node = node
        from gausstr_ros.tools.bag_writer import camera_info_topic, depth_topic, image_topic

        self.images = {c: node.create_publisher(CompressedImage, image_topic(c), OUTPUT_QOS) for c in CAMERAS}
        self.infos = {c: node.create_publisher(CameraInfo, camera_info_topic(c), OUTPUT_QOS) for c in CAMERAS}
        self.depths = {c: node.create_publisher(Image, depth_topic(c), OUTPUT_QOS) for c in CAMERAS}
        self.tf_static = node.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        self.jpegs = [jpeg(i) for i in range(3)]
        self.stamp_ns = 1_000_000_000_000
        self.sets = 0

    def publish_tf(self) -> None:
        from tf2_msgs.msg import TFMessage

        from gausstr_ros.tools.bag_writer import transform_msg

        self.tf_static.publish(TFMessage(transforms=[
            transform_msg("base_link", c, camera_to_ego(yaw), 0) for c, yaw in zip(CAMERAS, (0.0, np.pi))]))

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


def wait_output(node, recorder, rig: Rig, before: int, what: str, timeout_s: float = 60.0, proc=None,
                **defects) -> None:
    """Publish good sets (defects only in the first) until a new ~/occupancy arrives after `before` outputs."""
    deadline = time.monotonic() + timeout_s
    first = True
    while recorder.count("occupancy") <= before:
        assert time.monotonic() < deadline, f"no output after {what}\n{proc.log() if proc else ''}"
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


def start_node(checkpoint: Path, log_path: Path, **params):
    from gausstr_ros.tools.replay_session import NodeProcess

    return NodeProcess(checkpoint, CAMERAS, log_path, depth_source="topic", sync_slop_s=0.05, **params)


def call(node, srv_type, name: str, request, timeout_s: float = 30.0):
    from gausstr_ros.tools.replay_session import spin_until

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


def transition(node, transition_id: int, timeout_s: float = 30.0) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    request = ChangeState.Request(transition=Transition(id=transition_id))
    return call(node, ChangeState, "change_state", request, timeout_s).success


def state(node) -> str:
    from lifecycle_msgs.srv import GetState

    return call(node, GetState, "get_state", GetState.Request()).current_state.label
