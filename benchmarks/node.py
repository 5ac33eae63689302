"""Occupancy node cost per frame set: six 1600x900 JPEGs (>= 150 KB each) -> outputs.

Part 1 (direct calls, the node's own functions): decode (with the resize to the network input
made in the decoding threads), preprocess, features, model, voxelise, semantics, message
building, publish (rclpy publishers with a subscriber in this process), and the non-model
overhead (decode + preprocess + messages + publish) as a ratio to the 83 ms camera period, at the
tiny model's input (112x200) and at 504x896; and, at 504x896, the maximum absolute difference of
the network input (the tensor the model receives) from the float ResizeCrop of full decodes.
Part 2 (node in its own process, model replaced by a stub that receives the network input, checks
its size and returns a prediction made once): six cameras published at 12 Hz for --seconds at
504x896; output rate (goal >= 11.5 Hz), input-to-output latency and the node's /diagnostics counts.
The node publishes every output; the feeder process subscribes to ~/occupancy, the latency topic and
/diagnostics only (deserialising all outputs, 500 markers among them, costs the feeder CPU that the
node shares on a small machine). Feeder and node use config/fastdds_large_messages.xml (unless
FASTRTPS_DEFAULT_PROFILES_FILE is set): with Fast DDS's default shared-memory segment whole images are
lost.

    python benchmarks/node.py [--sets 5] [--seconds 15] [--skip-live]
Untrained tiny model (the cost does not depend on the weights); Occ3D grid 200x200x16.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage

from gausstr_core.config import load_config
from gausstr_core.data.synthetic.rig import nuscenes_rig
from gausstr_core.model.checkpoint import save_checkpoint
from gausstr_core.model.gausstr import GaussTR
from gausstr_core.predict import OccupancyPredictor

REPO = Path(__file__).resolve().parents[1]
PERIOD_MS = 1000 / 12
WIDTH, HEIGHT = 1600, 900
NETWORK_INPUT = (504, 896)


def make_jpegs() -> list[bytes]:
    """Six 1600x900 JPEGs, >= 150 KB each: blocks of the synthetic world's palette colours (what the tiny
    model's synthetic feature provider reads) with per-pixel noise."""
    from gausstr_core.synthetic_palette import palette_tensor

    colours = (palette_tensor().numpy() * 255).round()
    out = []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        blocks = colours[rng.integers(0, len(colours), (HEIGHT // 50 + 1, WIDTH // 50 + 1))]
        base = blocks.repeat(50, 0).repeat(50, 1)[:HEIGHT, :WIDTH]
        noise = rng.integers(-3, 4, (HEIGHT, WIDTH, 3))
        buf = io.BytesIO()
        PILImage.fromarray((base + noise).clip(0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    assert min(len(j) for j in out) >= 150_000, [len(j) for j in out]
    return out


def make_checkpoint(path: Path, input_size: tuple[int, int]) -> Path:
    config = load_config(str(REPO / "config" / "tiny.yaml"))
    data = config.data
    data.image_size, data.input_size = (HEIGHT, WIDTH), input_size
    data.feature_provider = {"name": "synthetic", "feature_dim": 64, "patch_size": 8, "seed": 0}
    torch.manual_seed(0)
    save_checkpoint(path, GaussTR(config.model), dataclasses.replace(config))
    return path


def frame_messages(jpegs: list[bytes], stamp_ns: int, depth_size: tuple[int, int]):
    from gausstr_ros.image_codec import camera_info_msg, compressed_image_msg, depth_image_msg
    from gausstr_ros.stamps import make_header

    rig = nuscenes_rig(WIDTH, HEIGHT)
    images, infos, depths = [], [], []
    for i, (cam, data) in enumerate(zip(rig, jpegs)):
        header = make_header(cam.name, stamp_ns + i * 7_000_000)
        images.append(compressed_image_msg(data, header))
        infos.append(camera_info_msg(cam.intrinsics, WIDTH, HEIGHT, header))
        depths.append(depth_image_msg(np.full(depth_size, 15.0, np.float32), header))
    return rig, images, infos, depths


def direct(jpegs: list[bytes], input_size: tuple[int, int], sets: int, tmp: Path) -> dict[str, float]:
    """Mean ms per stage over `sets` frame sets through the node's own input/output functions."""
    import rclpy

    from gausstr_ros.gaussian_msgs import MarkerPublisherState
    from gausstr_ros.image_codec import parse_camera_info
    from gausstr_ros.node_inputs import CameraMessages, camera_to_ego, decode_views
    from gausstr_ros.node_outputs import OUTPUT_TYPES, OutputOptions, build_outputs
    from gausstr_ros.qos import OUTPUT_QOS
    from gausstr_ros.stamps import make_header
    from gausstr_ros.tf_buffer import TransformBuffer
    from gausstr_ros.tools.bag_writer import transform_msg

    predictor = OccupancyPredictor.from_checkpoint(make_checkpoint(tmp / f"tiny_{input_size[0]}.pth", input_size))
    rig, images, infos, depths = frame_messages(jpegs, 10**18, input_size)
    tf = TransformBuffer()
    for cam in rig:
        tf.add_message(transform_msg("base_link", cam.name, cam.cam2ego, 0), static=True)
    intrinsics = [parse_camera_info(m) for m in infos]
    cameras = [c.name for c in rig]
    node = rclpy.create_node(f"bench_{input_size[0]}")
    pubs = {k: node.create_publisher(t, f"~/{k}", OUTPUT_QOS) for k, t in OUTPUT_TYPES.items()}
    subs = [node.create_subscription(t, f"~/{k}", lambda m: None, OUTPUT_QOS) for k, t in OUTPUT_TYPES.items()]
    state, options = MarkerPublisherState(), OutputOptions(bev_obstacle_classes=("car", "manmade"))
    rows, diff = [], float("nan")
    for i in range(sets + 1):  # the first set warms up
        frame = CameraMessages(tuple(10**18 for _ in cameras), tuple(images), tuple(depths), time.monotonic())
        start = time.perf_counter()
        cpu_start = time.process_time()
        cam2ego = camera_to_ego(tf, "base_link", cameras, frame.images)
        decode_start = time.perf_counter()
        views = decode_views(frame, cameras, intrinsics, cam2ego, input_size, network_input=True)
        decoded, cpu_decoded = time.perf_counter(), time.process_time()
        prediction = predictor.predict(views)
        built, cpu_built = time.perf_counter(), time.process_time()
        outputs = build_outputs(prediction, make_header("base_link", 10**18), options, state)
        published = time.perf_counter()
        for key, msg in outputs.items():
            pubs[key].publish(msg)
        end, cpu_end = time.perf_counter(), time.process_time()
        if i:  # cpu: process CPU time (all threads) of decode + messages + publish, less sensitive to other load
            rows.append({"decode": (decoded - decode_start) * 1e3, **prediction.timings,
                         "messages": (published - built) * 1e3, "publish": (end - published) * 1e3,
                         "set": (end - start) * 1e3,
                         "overhead cpu": (cpu_decoded - cpu_start + cpu_end - cpu_built) * 1e3})
        else:
            diff = network_input_difference(predictor, views, jpegs)
    for sub in subs:
        node.destroy_subscription(sub)
    node.destroy_node()
    return {k: statistics.mean(r[k] for r in rows) for k in rows[0]}, diff


def network_input_difference(predictor: OccupancyPredictor, views, jpegs: list[bytes]) -> float:
    """Max |network input - float ResizeCrop of the full decodes| in units of 1/255."""
    from torchvision.io import ImageReadMode, decode_jpeg

    full = torch.stack([decode_jpeg(torch.frombuffer(bytearray(j), dtype=torch.uint8), mode=ImageReadMode.RGB)
                        for j in jpegs])
    reference = predictor.prepare(dataclasses.replace(views, images=full, original_to_input=None, depths=None)).images
    ours = predictor.prepare(dataclasses.replace(views, depths=None)).images
    return float((ours - reference).abs().max()) * 255


def stub_node(ros_args: list[str]) -> None:
    """The occupancy node with OccupancyPredictor.predict replaced by a stub: it makes the network input
    (prepare), checks its size, and returns the prediction of the first call (a real one) again."""
    import gausstr_ros.node as node_module

    real_predict, made = OccupancyPredictor.predict, {}

    def stub_predict(self: OccupancyPredictor, views) -> object:
        start = time.perf_counter()
        inputs = self.prepare(views)
        if tuple(inputs.images.shape[-2:]) != NETWORK_INPUT or inputs.images.shape[0] != 6:
            raise RuntimeError(f"stub model: network input {tuple(inputs.images.shape)}")
        if "prediction" not in made:
            made["prediction"] = real_predict(self, views)
        timings = {**made["prediction"].timings, "preprocess": (time.perf_counter() - start) * 1e3}
        return dataclasses.replace(made["prediction"], timings=timings)

    OccupancyPredictor.predict = stub_predict
    node_module.main(["stub_node", *ros_args])


def live(jpegs: list[bytes], seconds: float, tmp: Path) -> tuple[float, float, int, int, dict[str, str]]:
    """Stub-model node process fed at 12 Hz at 504x896: (mean pipeline latency ms, output rate Hz, sets
    published, outputs) over the `seconds` after the first output, and the node's last /diagnostics
    pipeline values (whole run)."""
    import subprocess
    import sys

    import rclpy
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from tf2_msgs.msg import TFMessage

    from gausstr_ros.qos import OUTPUT_QOS, TF_STATIC_QOS
    from gausstr_ros.tools.bag_writer import camera_info_topic, depth_topic, image_topic, transform_msg
    from gausstr_ros.tools.output_recorder import OutputRecorder
    from gausstr_ros.tools.replay_session import input_topics, node_command, spin_until, wait_for_subscriptions

    checkpoint = make_checkpoint(tmp / "live.pth", NETWORK_INPUT)
    rig = nuscenes_rig(WIDTH, HEIGHT)
    cameras = [c.name for c in rig]
    node = rclpy.create_node("bench_feeder")
    pubs = [(node.create_publisher(CompressedImage, image_topic(c), OUTPUT_QOS),
             node.create_publisher(CameraInfo, camera_info_topic(c), OUTPUT_QOS),
             node.create_publisher(Image, depth_topic(c), OUTPUT_QOS)) for c in cameras]
    tf_pub = node.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
    # the feeder records only what it reports: deserialising every output would take the node's CPU here
    recorder = OutputRecorder(node, keys=("occupancy", "debug/pipeline_latency_ms", "diagnostics"))
    command = node_command(checkpoint, cameras, depth_source="topic")[1:]  # "--ros-args", ...
    with open(tmp / "node.log", "w") as log:
        proc = subprocess.Popen([sys.executable, __file__, "--stub-node", *command], stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        if not wait_for_subscriptions(node, input_topics(cameras, True), 120):
            raise RuntimeError(f"node not ready:\n{(tmp / 'node.log').read_text()}")
        tf_pub.publish(TFMessage(transforms=[transform_msg("base_link", c.name, c.cam2ego, 0) for c in rig]))
        spin_until(node, lambda: False, 2.0)
        # 12 Hz from now on; the measured window starts at the first output (the stub's one real prediction)
        start, sent, counted_from = time.monotonic(), 0, None
        while counted_from is None or time.monotonic() - counted_from[0] < seconds:
            due = start + sent * PERIOD_MS / 1000
            spin_until(node, lambda d=due: time.monotonic() >= d, 1.0)
            if counted_from is None and recorder.count("occupancy"):
                counted_from = (time.monotonic(), recorder.count("occupancy"), sent)
            if counted_from is None and time.monotonic() - start > 300:
                raise RuntimeError(f"no output in 300 s:\n{(tmp / 'node.log').read_text()[-3000:]}")
            # depth maps at 1/8 of the input: the feeder's transport load stays small (resized like any other)
            _, images, infos, depths = frame_messages(jpegs, time.time_ns(), (63, 112))
            for (pi, pc, pd), image, info, depth in zip(pubs, images, infos, depths):
                pc.publish(info)
                pd.publish(depth)
                pi.publish(image)
            sent += 1
        rate = (recorder.count("occupancy") - counted_from[1]) / (time.monotonic() - counted_from[0])
        sent -= counted_from[2]
        spin_until(node, lambda: False, 3.0)
        outputs = recorder.count("occupancy") - counted_from[1]
        latencies = [r.msg.data for r in recorder.messages["debug/pipeline_latency_ms"]][counted_from[1]:]
        diagnostics = recorder.diagnostic_values()
    finally:
        proc.send_signal(2)
        proc.wait(30)
    node.destroy_node()
    return (statistics.mean(latencies) if latencies else float("nan")), rate, sent, outputs, diagnostics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--stub-node", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)  # internal: part 2's node
    args = parser.parse_args()
    if args.stub_node is not None:
        stub_node(args.stub_node)  # ends the process
    import rclpy

    os.environ.setdefault("ROS_DOMAIN_ID", "57")
    # Six ~170 KB JPEGs per set overflow Fast DDS's default 512 KiB shared-memory segment (images lost, no
    # camera sets): the feeder (this process) and the node use the profile the README gives for such streams.
    os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_large_messages.xml"))
    rclpy.init()
    jpegs = make_jpegs()
    print(f"six 1600x900 JPEGs: {[len(j) // 1000 for j in jpegs]} KB; torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        for input_size in ((112, 200), NETWORK_INPUT):
            ms, diff = direct(jpegs, input_size, args.sets, Path(tmp))
            overhead = ms["decode"] + ms["preprocess"] + ms["messages"] + ms["publish"]
            print(f"\ninput {input_size[1]}x{input_size[0]} (mean of {args.sets} sets, ms): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in ms.items()))
            print(f"  non-model overhead (decode + preprocess + messages + publish) {overhead:.1f} ms = "
                  f"{overhead / PERIOD_MS:.2f} x the 83 ms camera period (goal <= 0.75 at 504x896); CPU time of "
                  f"decode + messages + publish {ms['overhead cpu']:.1f} ms (all threads)")
            scaled = " (JPEG decoded at a reduced libjpeg scale: approximate)" if input_size[0] * 2 <= HEIGHT else ""
            print(f"  network input vs float ResizeCrop of full decodes: max abs diff {diff:.3f} / 255{scaled} "
                  "(goal <= 1 at 504x896)")
        if not args.skip_live:
            latency, rate, sent, outputs, diagnostics = live(jpegs, args.seconds, Path(tmp))
            print(f"\nnode process with a stub model at 504x896, six cameras at 12 Hz, {args.seconds:.0f} s after the "
                  f"first output ({sent} sets sent): output rate {rate:.2f} Hz (goal >= 11.5), {outputs} "
                  f"outputs ({sent - outputs} sets without one); input-to-output latency {latency:.0f} ms (mean); "
                  f"Fast DDS profile {os.environ['FASTRTPS_DEFAULT_PROFILES_FILE']}")
            keys = ("camera sets", "sets processed", "sets dropped (model busy)", "sync overflow drops",
                    "out-of-order drops")
            print("  node /diagnostics over the whole run: " + ", ".join(f"{k} {diagnostics.get(k)}" for k in keys))
    rclpy.shutdown()


if __name__ == "__main__":
    main()
