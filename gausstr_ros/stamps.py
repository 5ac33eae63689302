"""ROS time stamps <-> integer nanoseconds, and headers."""

from __future__ import annotations

from builtin_interfaces.msg import Time
from std_msgs.msg import Header


def stamp_to_ns(stamp: Time) -> int:
    """builtin_interfaces/Time -> nanoseconds since the epoch."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(stamp_ns: int) -> Time:
    """Nanoseconds (>= 0) -> builtin_interfaces/Time."""
    if stamp_ns < 0:
        raise ValueError(f"stamp must be >= 0 ns, got {stamp_ns}")
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def make_header(frame_id: str, stamp_ns: int) -> Header:
    return Header(frame_id=frame_id, stamp=ns_to_stamp(stamp_ns))
