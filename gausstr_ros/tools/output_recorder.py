"""Subscribes to the occupancy node's outputs and keeps what arrives (for the demo, tests, benchmarks).

`OutputRecorder(node, node_name)` listens to ~/occupancy, ~/occupancy/points, ~/occupancy/bev,
~/gaussians, ~/gaussians/markers, the two debug timing topics and /diagnostics of the node
`node_name` (fully qualified, e.g. "/gausstr_occupancy"), or only the `keys` asked for. Each message is stored with the
monotonic time it arrived. Spin `node` (rclpy.spin_once or an executor) to receive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from std_msgs.msg import Float64, Header
from visualization_msgs.msg import MarkerArray

from gausstr_ros.msg import SemanticOccupancy
from gausstr_ros.node_outputs import OUTPUT_TOPICS, OUTPUT_TYPES
from gausstr_ros.qos import OUTPUT_QOS
from gausstr_ros.stamps import stamp_to_ns

DEBUG_TOPICS = ("debug/processing_time_ms", "debug/pipeline_latency_ms")


@dataclass
class Received:
    msg: Any
    arrival_s: float  # time.monotonic()


class OutputRecorder:
    """Stores every output message of one occupancy node, by relative topic key."""

    def __init__(self, node: Node, node_name: str = "/gausstr_occupancy",
                 on_message: Callable[[str, Any], None] | None = None, keys: Iterable[str] | None = None) -> None:
        """keys: the outputs to subscribe to (OUTPUT_TOPICS, DEBUG_TOPICS keys and "diagnostics"); None: all."""
        self.node_name = "/" + node_name.strip("/")
        self._lock = threading.Lock()
        self._on_message = on_message
        known = (*OUTPUT_TOPICS, *DEBUG_TOPICS, "diagnostics")
        keys = known if keys is None else tuple(keys)
        if unknown := sorted(set(keys) - set(known)):
            raise ValueError(f"OutputRecorder: unknown output keys {unknown}; known: {list(known)}")
        self.messages: dict[str, list[Received]] = {key: [] for key in known}
        types = {**OUTPUT_TYPES, **dict.fromkeys(DEBUG_TOPICS, Float64)}
        self._subscriptions = [
            node.create_subscription(types[key], f"{self.node_name}/{key}", self._callback(key), OUTPUT_QOS)
            for key in keys if key != "diagnostics"
        ]
        if "diagnostics" in keys:
            self._subscriptions.append(
                node.create_subscription(DiagnosticArray, "/diagnostics", self._callback("diagnostics"), OUTPUT_QOS))

    def _callback(self, key: str) -> Callable[[Any], None]:
        def store(msg: Any) -> None:
            with self._lock:
                self.messages[key].append(Received(msg, time.monotonic()))
            if self._on_message is not None:
                self._on_message(key, msg)

        return store

    def count(self, key: str) -> int:
        with self._lock:
            return len(self.messages[key])

    def stamps_ns(self, key: str) -> list[int]:
        with self._lock:
            return [stamp_to_ns(header_of(r.msg).stamp) for r in self.messages[key]]

    def diagnostic_values(self) -> dict[str, str]:
        """Key -> value of the node's statuses in the newest /diagnostics message (empty if none)."""
        with self._lock:
            arrays = [r.msg for r in self.messages["diagnostics"]]
        for array in reversed(arrays):
            ours = [s for s in array.status if s.name.startswith(self.node_name.strip("/"))]
            if ours:
                return {kv.key: kv.value for s in ours for kv in s.values}
        return {}

    def diagnostic_messages(self) -> list[str]:
        """'level name: message' of every status of this node received so far."""
        with self._lock:
            arrays = [r.msg for r in self.messages["diagnostics"]]
        prefix = self.node_name.strip("/")
        return [f"{int.from_bytes(s.level, 'little') if isinstance(s.level, bytes) else int(s.level)} "
                f"{s.name}: {s.message}" for a in arrays for s in a.status if s.name.startswith(prefix)]


def header_of(msg: Any) -> Header:
    """The header of an output message (a MarkerArray's: its first marker's)."""
    if isinstance(msg, MarkerArray):
        if not msg.markers:
            raise ValueError("empty MarkerArray has no header")
        return msg.markers[0].header
    return msg.header


def occupancy_labels(msg: SemanticOccupancy) -> np.ndarray:
    """(X, Y, Z) uint8 labels of a SemanticOccupancy message."""
    return np.frombuffer(bytes(msg.labels), dtype=np.uint8).reshape(msg.dims_x, msg.dims_y, msg.dims_z)
