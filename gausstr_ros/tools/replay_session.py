"""Run the occupancy node as its own process on a bag (gausstr-play) and record its outputs.

Used by the demo, the node tests and benchmarks/node.py. The node gets the remappings of the
`nuscenes` topic preset (gausstr_ros.topic_presets: the topics gausstr-bag writes, as the launch
file's default); parameters go as `-p name:=value`.

    with NodeProcess(checkpoint, cameras, log_path, depth_source="topic") as proc:
        result = replay_bag(bag, cameras, expected_sets=4, depth=True)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rclpy
from rclpy.node import Node

from gausstr_ros.tools.bag_writer import BAG_TOPICS, camera_info_topic, depth_topic, image_topic
from gausstr_ros.tools.output_recorder import OutputRecorder


def input_topics(cameras: Sequence[str], depth: bool) -> list[str]:
    """Bag topics the node subscribes to (plus /tf_static)."""
    topics = [t for cam in cameras for t in (image_topic(cam), camera_info_topic(cam))]
    return topics + [depth_topic(cam) for cam in cameras if depth] + ["/tf_static"]


def _param_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def _console_script(name: str, module: str) -> list[str]:
    """The installed console script (next to this Python first), else `python -m module`."""
    script = Path(sys.executable).with_name(name)
    if script.is_file():
        return [str(script)]
    found = shutil.which(name)
    return [found] if found else [sys.executable, "-m", module]


def node_command(
    checkpoint: str | Path, cameras: Sequence[str], executable: Sequence[str] | None = None, **params: Any
) -> list[str]:
    """`occupancy_node --ros-args -p ... -r ...` for a gausstr-bag bag (images compressed);
    executable: another command line taking the node's arguments (default: occupancy_node)."""
    values = {"checkpoint": str(checkpoint), "cameras": list(cameras), "image_transport": BAG_TOPICS.image_transport,
              **params}
    cmd = [*(executable or _console_script("occupancy_node", "gausstr_ros.node")), "--ros-args"]
    for name, value in values.items():
        cmd += ["-p", f"{name}:={_param_value(value)}"]
    for source, target in BAG_TOPICS.remappings(cameras):
        cmd += ["-r", f"{source}:={target}"]
    return cmd


class NodeProcess:
    """The node in a child process (log written to `log_path`); stopped with SIGINT on exit.
    executable: as node_command's."""

    def __init__(
        self, checkpoint: str | Path, cameras: Sequence[str], log_path: str | Path,
        executable: Sequence[str] | None = None, **params: Any,
    ) -> None:
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115 -- closed in stop()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "RCUTILS_COLORIZED_OUTPUT": "0"}
        self.process = subprocess.Popen(node_command(checkpoint, cameras, executable, **params), stdout=self._log,
                                        stderr=subprocess.STDOUT, env=env)

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGINT, then wait (kill after timeout_s); returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def wait_for_subscriptions(node: Node, topics: Sequence[str], timeout_s: float) -> bool:
    """Spin `node` until every topic has a subscriber in the graph (True) or timeout_s passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(node.count_subscribers(t) > 0 for t in topics):
            return True
        rclpy.spin_once(node, timeout_sec=0.1)
    return False


def spin_until(node: Node, done, timeout_s: float) -> bool:
    """Spin `node` until done() (True) or timeout_s passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return True
        rclpy.spin_once(node, timeout_sec=0.05)
    return bool(done())


@dataclass
class ReplayResult:
    recorder: OutputRecorder
    play_log: str
    complete: bool  # every expected set came out before the timeout


def replay_bag(
    node: Node,
    recorder: OutputRecorder,
    bag: str | Path,
    cameras: Sequence[str],
    expected_sets: int,
    depth: bool,
    rate: float = 1.0,
    ready_timeout_s: float = 120.0,
    timeout_s: float = 300.0,
) -> ReplayResult:
    """Wait until the node subscribes to the bag's topics, play the bag with gausstr-play (own process),
    and spin `node` until `expected_sets` ~/occupancy messages arrived (or timeout_s)."""
    if not wait_for_subscriptions(node, input_topics(cameras, depth), ready_timeout_s):
        raise TimeoutError(f"the node did not subscribe to the bag topics within {ready_timeout_s:.0f} s")
    before = recorder.count("occupancy")
    play = subprocess.Popen(
        [*_console_script("gausstr-play", "gausstr_ros.tools.play"), str(bag), "--rate", str(rate), "--wait", "30",
         "--delay", "2", "--linger", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        complete = spin_until(node, lambda: recorder.count("occupancy") - before >= expected_sets, timeout_s)
        spin_until(node, lambda: play.poll() is not None, 30)
    finally:
        if play.poll() is None:
            play.kill()
        play_log = play.communicate()[0]
    spin_until(node, lambda: False, 0.5)  # the other outputs of the last set
    return ReplayResult(recorder, play_log, complete)

