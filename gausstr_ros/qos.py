"""QoS profiles of the node and the bag tools, and their rosbag2 metadata form.

- SENSOR_QOS: camera inputs (images, camera_info, depth): best effort, keep last 5; matches
  both best-effort and reliable publishers.
- TF_QOS / TF_STATIC_QOS: as tf2 (reliable, keep last 100; /tf_static transient local so a late
  subscriber still gets the calibration).
- OUTPUT_QOS: the node's outputs and recorded streams in bags: reliable, keep last 10.
- CLOCK_QOS: /clock, reliable keep last 1 (matches the best-effort subscription of rclpy).
"""

from __future__ import annotations

from collections.abc import Sequence

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    LivelinessPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

SENSOR_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(
    depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
OUTPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
CLOCK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)

_ZERO = QosTime(0, 0)  # rosbag2: default (= infinite) deadline, lifespan and lease


def to_bag_qos(profile: QoSProfile) -> Qos:
    """rclpy profile -> rosbags Qos for metadata.yaml `offered_qos_profiles` (rmw enum values are shared)."""
    return Qos(
        QosHistory(int(profile.history)),
        int(profile.depth),
        QosReliability(int(profile.reliability)),
        QosDurability(int(profile.durability)),
        _ZERO,
        _ZERO,
        QosLiveliness(int(LivelinessPolicy.AUTOMATIC)),
        _ZERO,
        False,
    )


def from_bag_qos(offered: Sequence[Qos], default: QoSProfile = OUTPUT_QOS) -> QoSProfile:
    """Publisher profile for replaying a recorded topic, adapted to what its recorders offered.

    Reliable only if every offered profile was reliable; transient local if any was (e.g.
    /tf_static); depth = the largest offered keep-last depth. No offered profiles: `default`.
    """
    if not offered:
        return default
    reliable = all(q.reliability == QosReliability.RELIABLE for q in offered)
    latched = any(q.durability == QosDurability.TRANSIENT_LOCAL for q in offered)
    depth = max([q.depth for q in offered if q.history == QosHistory.KEEP_LAST and q.depth > 0] or [default.depth])
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )
