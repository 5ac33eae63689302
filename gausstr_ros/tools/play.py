"""`gausstr-play`: replay a ROS 2 bag through rclpy publishers (for machines without the ros2 CLI).

Messages are published as recorded (CDR -> rclpy message -> publish) at their log times scaled by
`--rate`, each topic with a QoS adapted from the bag's offered profiles (so /tf_static stays
transient local). `--clock` publishes the bag time on /clock (run subscribers with
use_sim_time); on `--loop` the bag time jumps back to the start, as with `ros2 bag play --loop`.
`--wait` first waits until every image topic (sensor_msgs Image / CompressedImage) has a
subscriber (all topics when the bag has none). SIGINT and SIGTERM stop it at once, also while
waiting, with exit code 0 (gausstr_ros.shutdown).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader
from rosgraph_msgs.msg import Clock

from gausstr_core.cli.entry import CliParser, console_script
from gausstr_ros.qos import CLOCK_QOS, from_bag_qos
from gausstr_ros.shutdown import StopSignals, init_ros
from gausstr_ros.stamps import ns_to_stamp

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


def message_class(msgtype: str) -> type:
    """'sensor_msgs/msg/CompressedImage' -> the rclpy message class."""
    package, _, name = msgtype.rpartition("/msg/")
    if not package or not name:
        raise ValueError(f"unexpected message type name {msgtype!r}")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError) as err:
        raise ImportError(f"message type {msgtype} is not importable in this Python: {err}") from err


@dataclass
class PlayStats:
    published: dict[str, int] = field(default_factory=dict)
    clock_messages: int = 0
    loops: int = 0


class BagPlayer:
    """Publishes the messages of one bag folder from `node` (see module docstring)."""

    def __init__(self, node: Node, bag: str | Path, topics: Sequence[str] | None = None, clock: bool = False,
                 clock_hz: float = 100.0) -> None:
        self.bag = Path(bag)
        if not (self.bag / "metadata.yaml").is_file():
            raise FileNotFoundError(f"{self.bag} is not a ROS 2 bag folder (no metadata.yaml)")
        if clock_hz <= 0:
            raise ValueError(f"clock_hz must be > 0, got {clock_hz}")
        self._node = node
        self._clock_period = 1.0 / clock_hz
        self.stats = PlayStats()
        with Reader(self.bag) as reader:
            known = {c.topic for c in reader.connections}
            missing = sorted(set(topics or ()) - known)
            if missing:
                raise ValueError(f"topics {missing} are not in {self.bag} (it has {sorted(known)})")
            self._connections = [c for c in reader.connections if not topics or c.topic in topics]
            self.start_ns, self.end_ns = reader.start_time, reader.end_time
        self._publishers = {}
        images = {c.topic for c in self._connections if c.msgtype in IMAGE_TYPES}
        self.wait_topics = sorted(images or {c.topic for c in self._connections})
        for topic in sorted({c.topic for c in self._connections}):
            conns = [c for c in self._connections if c.topic == topic]
            qos = from_bag_qos([q for c in conns for q in c.ext.offered_qos_profiles])
            self._publishers[topic] = node.create_publisher(message_class(conns[0].msgtype), topic, qos)
            self.stats.published[topic] = 0
        self._clock_pub = node.create_publisher(Clock, "/clock", CLOCK_QOS) if clock else None
        self._last_clock_ns: int | None = None

    def unmatched_topics(self) -> list[str]:
        """The wait topics (image topics) that have no matched subscription yet."""
        return [t for t in self.wait_topics if self._publishers[t].get_subscription_count() == 0]

    def wait_for_subscribers(self, timeout_s: float, should_stop=lambda: False) -> bool:
        """Block until every image topic has a matched subscription (True), or timeout_s passes or
        should_stop() (False)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not should_stop():
            if not self.unmatched_topics():
                return True
            time.sleep(0.05)
        return not self.unmatched_topics()

    def play(self, rate: float = 1.0, loop: bool = False, should_stop=lambda: False) -> PlayStats:
        """Publish every message at its log time / rate (blocking); with loop, until should_stop()."""
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        while True:
            self._play_once(rate, should_stop)
            if not loop or should_stop():
                return self.stats
            self.stats.loops += 1

    def _play_once(self, rate: float, should_stop) -> None:
        wall_start = time.monotonic()
        self._last_clock_ns = None  # a loop may step the clock back to the start
        with Reader(self.bag) as reader:
            conns = [c for c in reader.connections if c.id in {k.id for k in self._connections}]
            for conn, stamp_ns, data in reader.messages(connections=conns):
                due = wall_start + (stamp_ns - self.start_ns) * 1e-9 / rate
                while (wait := due - time.monotonic()) > 0:
                    if should_stop():
                        return
                    self._publish_clock(self.start_ns + int((time.monotonic() - wall_start) * rate * 1e9))
                    time.sleep(min(wait, self._clock_period))
                self._publish_clock(stamp_ns)
                # rclpy's publish(bytes) is not delivered by the PyPI Fast DDS rmw: publish the message
                publisher = self._publishers[conn.topic]
                publisher.publish(deserialize_message(bytes(data), publisher.msg_type))
                self.stats.published[conn.topic] += 1
                if should_stop():
                    return

    def _publish_clock(self, bag_ns: int) -> None:
        if self._clock_pub is None:
            return
        if self._last_clock_ns is not None:
            bag_ns = max(bag_ns, self._last_clock_ns)  # monotonic within a pass
        self._clock_pub.publish(Clock(clock=ns_to_stamp(bag_ns)))
        self._last_clock_ns = bag_ns
        self.stats.clock_messages += 1


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="gausstr-play", description=__doc__.split("\n")[0])
    p.add_argument("bag", help="bag folder (with metadata.yaml)")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    p.add_argument("--loop", action="store_true", help="start again at the end, until Ctrl-C")
    p.add_argument("--clock", action="store_true", help="publish the bag time on /clock")
    p.add_argument("--clock-hz", type=float, default=100.0, help="/clock rate between messages")
    p.add_argument("--topics", nargs="+", help="only these topics")
    p.add_argument("--wait", type=float, default=0.0,
                   help="first wait up to this many seconds until every image topic has a subscriber")
    p.add_argument("--delay", type=float, default=1.0, help="then wait this many seconds (discovery) before playing")
    p.add_argument("--linger", type=float, default=1.0, help="seconds to stay up after the last message")
    return p


@console_script("gausstr-play")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with StopSignals() as stop:
        init_ros()
        node = rclpy.create_node("gausstr_play")
        try:
            player = BagPlayer(node, args.bag, args.topics, clock=args.clock, clock_hz=args.clock_hz)
            duration = (player.end_ns - player.start_ns) * 1e-9
            print(f"playing {args.bag}: {len(player.stats.published)} topics, {duration:.1f} s at rate {args.rate}",
                  flush=True)
            if args.wait > 0 and not player.wait_for_subscribers(args.wait, stop.is_set) and not stop.is_set():
                print(f"no subscriber on {player.unmatched_topics()} after {args.wait:.1f} s: playing anyway",
                      flush=True)
            if not stop.wait(max(args.delay, 0.0)):
                stats = player.play(rate=args.rate, loop=args.loop, should_stop=stop.is_set)
                print(f"{'stopped' if stop.is_set() else 'done'}: {sum(stats.published.values())} messages, "
                      f"{stats.loops} loops, {stats.clock_messages} clock messages", flush=True)
                stop.wait(max(args.linger, 0.0))  # let reliable readers fetch the last samples
            if stop.received:
                print(f"{stop.received[0]}: stopped", flush=True)
        finally:
            node.destroy_node()
            rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
