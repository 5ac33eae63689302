"""Which input stamps the synchroniser may see, and when time has jumped back (ROS-free).

The synchroniser keeps each stream in stamp order, so a stamp far in the future or a clock that
jumps back (a bag played with --loop, a simulator reset) would blind it until time passes the old
stamps. StampGuard decides per message, all times integer nanoseconds:

- a stamp more than `max_future_ns` ahead of the node's clock is dropped (FUTURE), except while
  the clock reads 0 (a sim clock that has not started);
- a stamp at most `jump_tolerance_ns` behind its stream's newest accepted stamp goes on to the
  synchroniser (which drops it as out of order: one stale image is no reason to reset);
- a stamp further back is held (HELD); when every stream holds one, the streams jumped back
  together (JUMP): the caller resets and replays `take_held()`; a normal message on a stream
  discards its held one, returned by `check` as `discarded` so the caller can report it;
- `clock(now_ns)` says whether the clock went back by more than `jump_tolerance_ns` while the
  streams still hold stamps beyond the new time (or none yet): after a reset for the streams'
  own jump the clock's jump changes nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Verdict(Enum):
    ACCEPT = "accept"  # pass on to the synchroniser
    FUTURE = "future"  # dropped: too far ahead of the clock
    HELD = "held"  # kept aside: this stream jumped back, the others have not (yet)
    JUMP = "jump"  # every stream jumped back: reset, then replay take_held()


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    discarded: tuple[int, Any] | None = None  # (stamp, item) of a held message a normal one replaced


class StampGuard:
    """Per-stream stamp checks for `streams` input streams (see the module docstring). Thread-safe."""

    def __init__(self, streams: int, max_future_ns: int, jump_tolerance_ns: int) -> None:
        if streams < 1 or max_future_ns < 0 or jump_tolerance_ns < 0:
            raise ValueError(f"StampGuard: need streams >= 1 and non-negative limits, got {streams}, "
                             f"{max_future_ns}, {jump_tolerance_ns}")
        self._streams = streams
        self._max_future = max_future_ns
        self._tolerance = jump_tolerance_ns
        self._lock = threading.Lock()
        self._newest: list[int | None] = [None] * streams
        self._held: list[tuple[int, Any] | None] = [None] * streams
        self._clock: int | None = None

    def check(self, stream: int, stamp_ns: int, now_ns: int, item: Any = None) -> Check:
        """The verdict on one message of `stream` (item: what to hold and replay)."""
        with self._lock:
            if now_ns > 0 and stamp_ns > now_ns + self._max_future:
                return Check(Verdict.FUTURE)
            newest = self._newest[stream]
            if newest is not None and stamp_ns < newest - self._tolerance:
                self._held[stream] = (stamp_ns, item)
                return Check(Verdict.JUMP if all(h is not None for h in self._held) else Verdict.HELD)
            discarded, self._held[stream] = self._held[stream], None
            if newest is None or stamp_ns > newest:
                self._newest[stream] = stamp_ns
            return Check(Verdict.ACCEPT, discarded)

    def clock(self, now_ns: int) -> bool:
        """Record the clock; True if it went back by more than the tolerance since the last call and the
        streams' newest stamps are not all within the tolerance of the new time already."""
        with self._lock:
            went_back = self._clock is not None and now_ns < self._clock - self._tolerance
            self._clock = now_ns
            newest = [n for n in self._newest if n is not None]
            return went_back and (not newest or max(newest) > now_ns + self._tolerance)

    def take_held(self) -> list[tuple[int, int, Any]]:
        """Forget every stream's newest stamp and return the held messages as (stream, stamp, item), in stamp
        order, for replay after a reset."""
        with self._lock:
            held = [(i, h[0], h[1]) for i, h in enumerate(self._held) if h is not None]
            self._newest = [None] * self._streams
            self._held = [None] * self._streams
        return sorted(held, key=lambda entry: entry[1])
