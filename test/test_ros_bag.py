"""gausstr-bag on a tiny nuScenes-format tree, read back with rosbags + rclpy; gausstr-play to a
subscriber in this process while the player runs in another."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image as PILImage
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from tf2_msgs.msg import TFMessage

from gausstr_core.data.cache import write_cache_map
from gausstr_core.data.nuscenes import NuScenesReader
from gausstr_core.data.synthetic.rig import nuscenes_rig
from gausstr_core.data.synthetic.tables import NuScenesTables
from gausstr_ros.image_codec import decode_depth_msg, parse_camera_info
from gausstr_ros.stamps import stamp_to_ns
from gausstr_ros.tf_buffer import TransformBuffer
from gausstr_ros.tools import bag_cli
from gausstr_ros.tools.bag_writer import camera_frames, provider_depth_source, write_bag

VERSION = "v1.0-mini"
SCENE = "tiny-scene"
SAMPLES, SWEEPS_PER_SAMPLE = 3, 6
START_US = 1_735_689_600_000_000
DEPTH_SIZE = (18, 32)  # (H, W) of the cached depth maps


def ego2global(t: float) -> np.ndarray:
    yaw = 0.1 * t
    pose = np.eye(4)
    pose[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    pose[:3, 3] = [100 + 8 * t, 50 + 0.5 * t, 0.3]
    return pose


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """One scene, 3 keyframes + sweeps at 12 Hz, six staggered 64x36 cameras, keyframe depth cache."""
    root = tmp_path_factory.mktemp("nuscenes")
    rng = np.random.default_rng(0)
    tables = NuScenesTables(seed=1)
    log = tables.add_log("tiny-log", "2025-01-01")
    rig = nuscenes_rig(64, 36)
    samples = [tables.token("sample", i) for i in range(SAMPLES)]
    n_frames = (SAMPLES - 1) * SWEEPS_PER_SAMPLE + 1
    for cam in rig:
        calib = tables.add_calibration(log, cam.name, cam.intrinsics, cam.cam2ego)
        chain = []
        for f in range(n_frames):
            t = f * 0.5 / SWEEPS_PER_SAMPLE + cam.trigger_offset()
            stamp = START_US + round(t * 1e6)
            key = f % SWEEPS_PER_SAMPLE == 0
            name = f"{'samples' if key else 'sweeps'}/{cam.name}/{cam.name}__{stamp}.jpg"
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            PILImage.fromarray(rng.integers(0, 255, (36, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
            (root / name).write_bytes(buf.getvalue())
            token = tables.token("sample_data", cam.name, f)
            chain.append({"token": token, "sample_token": samples[math.ceil(f / SWEEPS_PER_SAMPLE)],
                          "calibrated_sensor_token": calib, "timestamp": stamp, "is_key_frame": key,
                          "width": 64, "height": 36, "filename": name, "ego2global": ego2global(t)})
            if key:
                depth = rng.uniform(1, 60, DEPTH_SIZE)
                depth[0, :4] = 0  # no measurement
                write_cache_map(root / "cache", "synthetic_depth", token, depth)
        tables.add_image_chain(chain)
    tables.add_scene(SCENE, log, samples, [START_US + i * 500_000 for i in range(SAMPLES)], "tiny")
    PILImage.new("L", (4, 4)).save(root / "map.png")
    tables.add_map("map.png")
    tables.write(root, VERSION)
    return root


@pytest.fixture(scope="module")
def reader(tree) -> NuScenesReader:
    return NuScenesReader(tree, VERSION)


def read_bag(path: Path) -> dict[str, list[tuple[int, object]]]:
    """topic -> [(log time ns, rclpy message)] using the real message classes."""
    types = {"sensor_msgs/msg/CompressedImage": CompressedImage, "sensor_msgs/msg/CameraInfo": CameraInfo,
             "sensor_msgs/msg/Image": Image, "tf2_msgs/msg/TFMessage": TFMessage}
    out: dict[str, list] = {}
    with Reader(path) as bag:
        for conn, stamp, data in bag.messages():
            out.setdefault(conn.topic, []).append((stamp, deserialize_message(bytes(data), types[conn.msgtype])))
    return out


def test_keyframe_bag_round_trips(tree, reader, tmp_path):
    from gausstr_ros.tools.bag_writer import cache_depth_source

    frames = camera_frames(reader, [SCENE])
    summary = write_bag(tmp_path / "bag", frames, depth=cache_depth_source(tree / "cache", "synthetic_depth"),
                        progress=False)
    assert list((tmp_path / "bag").glob("*.mcap"))
    bag = read_bag(tmp_path / "bag")
    cams = [c.name for c in nuscenes_rig()]
    expected_topics = {"/tf", "/tf_static"} | {f"/{c}/{s}" for c in cams for s in
                                                ("image_rect_compressed", "camera_info", "depth")}
    assert set(bag) == expected_topics
    assert {t: len(m) for t, m in bag.items()} == summary.message_counts
    assert len(bag["/tf_static"]) == 1 and len(bag["/tf"]) == 6 * SAMPLES

    records = {(cam, rec.timestamp * 1000): rec for cam, rec in frames}
    for cam in cams:
        images, infos, depths = (bag[f"/{cam}/{s}"] for s in ("image_rect_compressed", "camera_info", "depth"))
        assert len(images) == SAMPLES
        for (t_img, img), (t_info, info), (_, depth) in zip(images, infos, depths):
            rec = records[(cam, t_img)]
            assert t_info == t_img == stamp_to_ns(img.header.stamp) == stamp_to_ns(depth.header.stamp)
            assert img.header.frame_id == info.header.frame_id == cam and img.format == "jpeg"
            assert bytes(img.data) == Path(rec.image_path).read_bytes()  # the original JPEG bytes
            np.testing.assert_allclose(parse_camera_info(info).k, rec.intrinsics)
            cached = np.load(tree / "cache" / "synthetic_depth" / f"{rec.sample_data_token}.npy").astype(np.float32)
            got = decode_depth_msg(depth)
            assert got.shape == DEPTH_SIZE and np.isnan(got[0, :4]).all()
            np.testing.assert_array_equal(got[cached > 0], cached[cached > 0])

    tf = TransformBuffer()
    tf.add_message(bag["/tf_static"][0][1], static=True)
    for _, msg in bag["/tf"]:
        tf.add_message(msg)
    for (cam, stamp), rec in list(records.items())[:12]:
        np.testing.assert_allclose(tf.lookup("base_link", cam), rec.cam2ego, atol=1e-6)
        np.testing.assert_allclose(tf.lookup("map", "base_link", stamp), rec.ego2global, atol=1e-6)

    meta = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    qos = {t["topic_metadata"]["name"]: t["topic_metadata"]["offered_qos_profiles"]
           for t in meta["topics_with_message_count"]}
    assert "transient_local" in str(qos["/tf_static"]) and "volatile" in str(qos["/tf"])


def test_sweeps_sqlite3_with_limit(reader, tmp_path):
    frames = camera_frames(reader, [SCENE], keyframes_only=False, limit=4)
    write_bag(tmp_path / "bag", frames, storage="sqlite3", progress=False)
    assert list((tmp_path / "bag").glob("*.db3"))
    bag = read_bag(tmp_path / "bag")
    assert all(len(bag[f"/{c.name}/image_rect_compressed"]) == 4 for c in nuscenes_rig())
    stamps = [t for t, _ in bag["/CAM_FRONT/image_rect_compressed"]]
    assert np.allclose(np.diff(stamps), 83_333_333, atol=1_000)  # 12 Hz
    all_stamps = sorted(t for topic in bag.values() for t, _ in topic)
    assert all_stamps[-1] - all_stamps[0] < 0.4e9


def test_existing_folders_are_protected(reader, tmp_path):
    frames = camera_frames(reader, [SCENE], limit=1)
    write_bag(tmp_path / "bag", frames, progress=False)
    with pytest.raises(FileExistsError, match="exists"):
        write_bag(tmp_path / "bag", frames, progress=False)
    write_bag(tmp_path / "bag", frames, overwrite=True, progress=False)
    (tmp_path / "other").mkdir()
    with pytest.raises(FileExistsError, match="not a ROS 2 bag folder"):
        write_bag(tmp_path / "other", frames, overwrite=True, progress=False)
    with pytest.raises(ValueError, match="no camera frames"):
        write_bag(tmp_path / "empty", [], progress=False)


def test_provider_depth_sees_resized_images_and_scaled_intrinsics(reader):
    seen = {}

    def provider(images: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
        seen["shape"] = tuple(images.shape)
        return intrinsics[:, 0, 0, None, None].expand(images.shape[0], *images.shape[2:])

    _, rec = camera_frames(reader, [SCENE], limit=1)[0]
    depth = provider_depth_source(provider, (18, 32))(rec)
    assert seen["shape"] == (1, 3, 18, 32) and depth.shape == (18, 32)
    np.testing.assert_allclose(depth, rec.intrinsics[0, 0] * 32 / 64, rtol=1e-6)


def test_cli(tree, tmp_path, capsys):
    code = bag_cli.main([str(tmp_path / "bag"), "--dataroot", str(tree), "--version", VERSION, "--scene", SCENE,
                         "--limit", "2", "--depth", "cache", "--depth-kind", "synthetic_depth",
                         "--cache-root", str(tree / "cache"), "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "/CAM_BACK/depth: 2" in out and "/tf_static: 1" in out
    assert bag_cli.main([str(tmp_path / "bag2"), "--dataroot", str(tree), "--version", VERSION, "--scene", "nope"]) == 2
    assert "gausstr-bag: error: unknown scene(s) ['nope']" in capsys.readouterr().err


@pytest.mark.ros
def test_play_to_a_subscriber_in_another_process(reader, tmp_path, ros_domain_id):
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock

    frames = camera_frames(reader, [SCENE], keyframes_only=False, limit=6)
    write_bag(tmp_path / "bag", frames, progress=False)
    front = [(rec.timestamp * 1000, Path(rec.image_path).read_bytes()) for cam, rec in frames if cam == "CAM_FRONT"]

    rclpy.init()
    node = rclpy.create_node("play_listener")
    got: dict[str, list] = {"images": [], "clock": [], "static": []}
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(CompressedImage, "/CAM_FRONT/image_rect_compressed",
                             lambda m: got["images"].append((stamp_to_ns(m.header.stamp), bytes(m.data))), reliable)
    node.create_subscription(Clock, "/clock", lambda m: got["clock"].append(stamp_to_ns(m.clock)), reliable)
    player = subprocess.Popen(
        [sys.executable, "-m", "gausstr_ros.tools.play", str(tmp_path / "bag"), "--rate", "4", "--clock", "--wait",
         "30", "--delay", "0.5", "--linger", "4"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 40
        while len(got["images"]) < len(front) and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        # Subscribing to /tf_static only now: transient local must still deliver the calibration.
        latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(TFMessage, "/tf_static", got["static"].append, latched)
        while not got["static"] and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        output, _ = player.communicate(timeout=30)
    finally:
        if player.poll() is None:
            player.kill()
        node.destroy_node()
        rclpy.shutdown()
    assert player.returncode == 0, output
    assert got["images"] == front
    assert len(got["static"]) == 1 and len(got["static"][0].transforms) == 6
    clock = got["clock"]
    assert len(clock) > 10 and clock == sorted(clock)
    assert front[0][0] <= clock[-1] and clock[0] <= front[-1][0] + 100_000_000


@pytest.mark.ros
def test_player_rate_loop_and_topic_filter(reader, tmp_path, ros_domain_id):
    import rclpy

    from gausstr_ros.tools.play import BagPlayer

    frames = camera_frames(reader, [SCENE], keyframes_only=False, limit=4)  # ~0.29 s of data
    write_bag(tmp_path / "bag", frames, progress=False)
    span_s = (frames[-1][1].timestamp - frames[0][1].timestamp) * 1e-6
    rclpy.init()
    node = rclpy.create_node("player_under_test")
    try:
        player = BagPlayer(node, tmp_path / "bag", topics=["/CAM_BACK/image_rect_compressed", "/tf"])
        start = time.monotonic()
        player.play(rate=0.5)
        elapsed = time.monotonic() - start
        assert 2 * span_s * 0.9 <= elapsed < 2 * span_s + 1.0
        poses = len({r.timestamp for _, r in frames})
        assert player.stats.published == {"/CAM_BACK/image_rect_compressed": 4, "/tf": poses}
        passes = iter(range(1000))
        player.play(rate=100, loop=True, should_stop=lambda: next(passes) >= 40)
        assert player.stats.loops >= 1 and player.stats.published["/CAM_BACK/image_rect_compressed"] > 4
        with pytest.raises(ValueError, match=r"topics \['/nope'\] are not in"):
            BagPlayer(node, tmp_path / "bag", topics=["/nope"])
        with pytest.raises(FileNotFoundError, match="not a ROS 2 bag folder"):
            BagPlayer(node, tmp_path)
    finally:
        node.destroy_node()
        rclpy.shutdown()


def test_replay_qos_adapts_to_the_offered_profiles():
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    from gausstr_ros.qos import OUTPUT_QOS, SENSOR_QOS, TF_STATIC_QOS, from_bag_qos, to_bag_qos

    latched = from_bag_qos([to_bag_qos(TF_STATIC_QOS)])
    assert latched.durability == DurabilityPolicy.TRANSIENT_LOCAL and latched.depth == 100
    assert latched.reliability == ReliabilityPolicy.RELIABLE
    mixed = from_bag_qos([to_bag_qos(OUTPUT_QOS), to_bag_qos(SENSOR_QOS)])
    assert mixed.reliability == ReliabilityPolicy.BEST_EFFORT and mixed.durability == DurabilityPolicy.VOLATILE
    assert mixed.depth == 10
    assert from_bag_qos([]) is OUTPUT_QOS


def start_player(bag: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gausstr_ros.tools.play", str(bag), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for_line(process: subprocess.Popen, text: str, timeout_s: float = 60.0) -> str:
    seen, deadline = "", time.monotonic() + timeout_s
    while text not in seen:
        assert time.monotonic() < deadline and process.poll() is None, seen
        seen += process.stdout.readline()
    return seen


@pytest.mark.ros
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_play_stops_cleanly_on_signals_while_waiting_and_while_looping(reader, tmp_path, ros_domain_id, sig):
    """Before: an RCLError traceback on Ctrl-C and SIGTERM, also during --wait."""
    import signal

    write_bag(tmp_path / "bag", camera_frames(reader, [SCENE], keyframes_only=True, limit=6), progress=False)
    for args in (["--wait", "60"], ["--loop", "--clock", "--rate", "5", "--delay", "0"]):
        player = start_player(tmp_path / "bag", *args)
        out = wait_for_line(player, "playing")
        time.sleep(1.0)  # waiting for subscribers / looping
        start = time.monotonic()
        player.send_signal(getattr(signal, sig))
        out += player.communicate(timeout=10)[0]
        assert time.monotonic() - start < 2.0, out
        assert player.returncode == 0 and "Traceback" not in out and f"{sig}: stopped" in out, out


@pytest.mark.ros
def test_play_wait_needs_a_subscriber_on_every_image_topic(reader, tmp_path, ros_domain_id):
    """Before: --wait returned once any one topic had a subscriber, so the first camera set was often lost."""
    import rclpy

    write_bag(tmp_path / "bag", camera_frames(reader, [SCENE], keyframes_only=True, limit=6), progress=False)
    rclpy.init()
    node = rclpy.create_node("one_camera_listener")
    try:
        node.create_subscription(CompressedImage, "/CAM_FRONT/image_rect_compressed", lambda m: None, 10)
        node.create_subscription(TFMessage, "/tf_static", lambda m: None, 10)
        player = start_player(tmp_path / "bag", "--wait", "3", "--delay", "0", "--linger", "0")
        deadline = time.monotonic() + 60
        while player.poll() is None and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        out = player.communicate(timeout=10)[0]
    finally:
        node.destroy_node()
        rclpy.shutdown()
    assert player.returncode == 0, out
    line = next(line for line in out.splitlines() if line.startswith("no subscriber on"))
    assert "/CAM_BACK/image_rect_compressed" in line and "/CAM_FRONT/image_rect_compressed" not in line, out
    assert "/tf_static" not in line, out
