"""occupancy_node (own process, real rclpy) under real timing and faults: future stamps, jumps back of
every camera's stamps, a looping /tf, image bombs and 16-bit PNGs, wrong camera lists; and a
keyframe bag looped with `gausstr-play --loop --clock` gives outputs on every loop. Each case is a
failure the node had (blinded cameras, a dead TF, +400 MB per bomb, "inference failed")."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from node_rig import (  # noqa: F401 -- the pytest fixtures checkpoint, ros
    CAMERAS,
    HEIGHT,
    PERIOD_S,
    WIDTH,
    Rig,
    checkpoint_fixture,
    palette_image,
    ros_fixture,
    spin_for,
    start_node,
    wait_log,
    wait_output,
)

pytestmark = [pytest.mark.ros, pytest.mark.slow]
SEC = 1_000_000_000


def png(width: int, height: int, bit_depth: int, rows: bytes | None = None) -> bytes:
    """RGB PNG; rows None: all-black rows compressed in a stream (a small file that decodes huge)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    if rows is None:
        packer, row = zlib.compressobj(9), bytes(1 + width * 3 * bit_depth // 8)
        idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    else:
        idat = zlib.compress(rows)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_time_tf_and_image_faults_do_not_blind_the_node(checkpoint, ros, tmp_path):
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage

    from gausstr_ros.qos import TF_QOS
    from gausstr_ros.stamps import ns_to_stamp
    from gausstr_ros.tools.output_recorder import OutputRecorder
    from gausstr_ros.tools.replay_session import input_topics, spin_until, wait_for_subscriptions

    node = ros
    recorder = OutputRecorder(node)
    rig = Rig(node)
    rig.stamp_ns = time.time_ns()  # stamps on the node's (wall) clock
    tf_pub = node.create_publisher(TFMessage, "/tf", TF_QOS)
    with start_node(checkpoint, tmp_path / "node.log") as proc:
        assert wait_for_subscriptions(node, input_topics(CAMERAS, depth=True), 120), proc.log()
        rig.publish_tf()
        wait_output(node, recorder, rig, 0, "start", proc=proc)

        # One set stamped an hour ahead: dropped, not a reason to ignore every later (older) stamp.
        before = recorder.count("occupancy")
        rig.publish_set(stamp_ns=time.time_ns() + 3600 * SEC)
        wait_log(proc, "ahead of the node's clock (more than max_future_s = 2.0 s): dropped", node, recorder)
        wait_output(node, recorder, rig, before, "a future stamp", timeout_s=20, proc=proc)

        # Every camera's stamps jump back 10 min (a replayed log restarting): one reset, logged once.
        before = recorder.count("occupancy")
        rig.stamp_ns -= 600 * SEC
        wait_output(node, recorder, rig, before, "a jump back of all cameras", timeout_s=20, proc=proc)
        log = wait_log(proc, "every camera's stamps jumped back", node, recorder)
        assert log.count("time jumped back") == 1, log

        # A /tf that closes a loop with the static base_link -> left: lookups say 'loop', then recover.
        loop = TransformStamped(child_frame_id="base_link")
        loop.header.frame_id, loop.header.stamp = "left", ns_to_stamp(rig.stamp_ns + int(PERIOD_S * SEC))
        loop.transform.rotation.w = 1.0
        tf_pub.publish(TFMessage(transforms=[loop]))
        spin_for(node, 0.5)
        before = recorder.count("occupancy")
        rig.publish_set()
        wait_log(proc, "no transform base_link <- left (loop: the transform tree contains a loop", node, recorder)
        wait_output(node, recorder, rig, before, "a looping /tf", timeout_s=20, proc=proc)

        # A 12000 x 12000 PNG bomb (~0.5 MB): refused from its header, the node's peak memory does not move.
        bomb = png(12000, 12000, 8)
        assert len(bomb) < 1_000_000
        peak = peak_rss_mb(proc.process.pid)
        before = recorder.count("occupancy")
        rig.publish_set(image={"left": {"data": bomb, "format": "png"}})
        wait_log(proc, "bad image (left): PNG in CompressedImage is 12000x12000 = 144.0 MP, over the "
                       "max_image_pixels limit", node, recorder)
        wait_output(node, recorder, rig, before, "a PNG bomb", timeout_s=20, proc=proc)
        assert peak_rss_mb(proc.process.pid) - peak < 100, "the bomb was decoded"

        # 16-bit PNGs are converted, not an "inference failed" traceback.
        rgb16 = (palette_image(0).astype(np.uint32) * 257).astype(">u2")
        wide = png(WIDTH, HEIGHT, 16, b"".join(b"\x00" + row.tobytes() for row in rgb16))
        # the bomb's set counts as failed: read the count from a /diagnostics sent after that set
        diagnostics = recorder.count("diagnostics")
        assert spin_until(node, lambda: recorder.count("diagnostics") >= diagnostics + 2, 10), proc.log()
        failed = int(recorder.diagnostic_values()["sets failed"])
        before = recorder.count("occupancy")
        rig.publish_set(image={c: {"data": wide, "format": "png"} for c in CAMERAS})
        assert spin_until(node, lambda: recorder.count("occupancy") > before, 20), proc.log()
        spin_for(node, 1.5)
        assert int(recorder.diagnostic_values()["sets failed"]) == failed
        assert "inference failed" not in proc.log() and "Traceback" not in proc.log()
        assert proc.stop() == 0, proc.log()


def test_wrong_camera_list_is_named_and_depth_source_auto(checkpoint, ros, tmp_path):
    from gausstr_ros.tools.output_recorder import OutputRecorder
    from gausstr_ros.tools.replay_session import NodeProcess, spin_until

    node = ros
    recorder = OutputRecorder(node)
    rig = Rig(node)
    with NodeProcess(checkpoint, ["left", "front"], tmp_path / "node.log", sync_slop_s=0.05) as proc:
        wait_log(proc, "depth from topic (depth_source auto: the checkpoint configures no depth provider",
                 node, recorder, timeout_s=120)
        rig.publish_tf()
        for _ in range(12):
            rig.publish_set()
            spin_for(node, PERIOD_S)
        wait_log(proc, "waiting for camera (front): no image on /front/image_rect_compressed yet (0 publishers",
                 node, recorder)
        warn = "1 gausstr_occupancy: pipeline: waiting for camera front"  # level 1: WARN
        assert spin_until(node, lambda: any(m.startswith(warn) for m in recorder.diagnostic_messages()), 5), (
            recorder.diagnostic_messages()[-3:])
        assert recorder.count("occupancy") == 0
        assert proc.stop() == 0, proc.log()


def test_looping_keyframe_bag_gives_outputs_on_every_loop(tmp_path, ros_domain_id):
    """`gausstr-play --loop --clock` and use_sim_time: before, 3 outputs on the first loop and none after."""
    import dataclasses
    import subprocess

    import rclpy
    import torch

    from gausstr_core.config import GridConfig, load_config
    from gausstr_core.data.synthetic.generate import SynthOptions, generate_dataset
    from gausstr_core.data.synthetic.rig import nuscenes_rig
    from gausstr_core.model.checkpoint import save_checkpoint
    from gausstr_core.model.gausstr import GaussTR
    from gausstr_ros.tools import bag_cli
    from gausstr_ros.tools.output_recorder import OutputRecorder
    from gausstr_ros.tools.replay_session import NodeProcess, input_topics, spin_until, wait_for_subscriptions

    samples, loops = 10, 3
    cameras = ["CAM_FRONT", "CAM_BACK"]
    rig = [c for c in nuscenes_rig(160, 90) if c.name in cameras]
    generate_dataset(tmp_path / "data", SynthOptions(scenes=1, samples_per_scene=samples, sweeps=False, patch_size=8,
                                                      rig=rig))
    bag_cli.main([str(tmp_path / "bag"), "--config", str(tmp_path / "data" / "gausstr_synthetic.yaml"),
                  "--depth", "cache", "--quiet"])
    config = load_config(str(tmp_path / "data" / "gausstr_synthetic.yaml"))
    config = dataclasses.replace(config, model=load_config(str(Path(__file__).parents[1] / "config/tiny.yaml")).model,
                                 grid=GridConfig(range=(-20.0, -20.0, -1.0, 20.0, 20.0, 5.4), size=1.6))
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "tiny.pth", GaussTR(config.model), config)

    rclpy.init()
    node = rclpy.create_node("loop_listener")
    try:
        recorder = OutputRecorder(node)
        with NodeProcess(tmp_path / "tiny.pth", cameras, tmp_path / "node.log", use_sim_time=True) as proc:
            assert wait_for_subscriptions(node, input_topics(cameras, True), 120), proc.log()
            play = subprocess.Popen(
                [str(Path(__import__("sys").executable).with_name("gausstr-play")), str(tmp_path / "bag"), "--loop",
                 "--clock", "--wait", "30", "--delay", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True)
            try:
                def loops_seen() -> list[int]:
                    """Outputs per pass of the bag (the output stamps restart with each loop)."""
                    stamps = recorder.stamps_ns("occupancy")
                    counts = [1] if stamps else []
                    for previous, stamp in zip(stamps, stamps[1:]):
                        if stamp < previous:
                            counts.append(0)
                        counts[-1] += 1
                    return counts

                spin_until(node, lambda: len(loops_seen()) > loops + 1, 150)
            finally:
                play.send_signal(2)
                out = play.communicate(timeout=10)[0]
            counts = loops_seen()
            log = proc.log()
        assert play.returncode == 0 and "Traceback" not in out, out
        assert len(counts) > loops + 1, f"{counts}\n{log}\n{out}"
        assert all(c >= 0.9 * samples for c in counts[1 : loops + 1]), f"outputs per loop {counts}\n{log}"
        assert len(set(recorder.stamps_ns("occupancy"))) <= samples
    finally:
        node.destroy_node()
        rclpy.shutdown()
