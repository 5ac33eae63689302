"""Approximate-time synchronisation of K message streams (the ROS message_filters policy).

The policy is the one of message_filters' `ApproximateTime`: every output set holds one message
per topic, and among the sets that could be formed from the messages received so far the one
with the smallest spread (latest stamp - earliest stamp) is emitted, as soon as it is provably
optimal. A set is never emitted twice and messages are used in stamp order per topic. The
search keeps a "pivot" (the topic whose message ends the first candidate set); messages that
precede the candidate are parked in per-topic "past" lists so that later, better candidates
can still be formed from them. Options, as in message_filters:

- `queue_size`: messages kept per topic; on overflow the oldest is dropped and the topic may not
  become a pivot until a set has been formed without it at the end.
- `max_interval_ns` ("slop"): sets whose spread exceeds it are never emitted.
- `age_penalty`: >= 0, favours emitting older sets sooner (message_filters default 0.1).
- `inter_message_lower_bounds_ns`: per-topic minimum gap between two messages; lets the search
  prove optimality without waiting for the next message.

One deliberate difference: a message whose stamp is not newer than the newest one already
received on its topic is dropped and counted in `stats.out_of_order` (message_filters queues it
anyway, which breaks the per-topic stamp order its search relies on). Time that jumps back is
the caller's to detect (gausstr_ros.stamp_guard) and answer with `reset()`.

Thread-safe: `add` may be called from several threads; the callback runs outside the lock, in
the thread whose `add` completed the set, once per set in stamp order.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

_NO_PIVOT = -1


@dataclass(frozen=True)
class SyncedMessages:
    """One message per topic. stamps_ns[i] and messages[i] belong to topic i."""

    stamps_ns: tuple[int, ...]
    messages: tuple[Any, ...]

    @property
    def spread_ns(self) -> int:
        return max(self.stamps_ns) - min(self.stamps_ns)


@dataclass
class SyncStats:
    """Counters per topic (lists of length K) and the number of emitted sets."""

    received: list[int]
    dropped_overflow: list[int]
    out_of_order: list[int]
    sets: int = 0


@dataclass
class _Entry:
    stamp: int
    msg: Any


@dataclass
class _Topic:
    queue: deque = field(default_factory=deque)  # of _Entry, stamp-ordered
    past: list = field(default_factory=list)  # entries moved out of the queue during the search
    dropped: bool = False  # overflowed since it last was a non-pivot member of a set search
    last_stamp: int | None = None
    lower_bound: int = 0


class ApproximateTimeSync:
    """Minimal-spread approximate-time synchroniser over `num_topics` streams.

    callback(SyncedMessages) is called for every completed set. Stamps are integer nanoseconds.
    """

    def __init__(
        self,
        num_topics: int,
        callback: Callable[[SyncedMessages], None],
        queue_size: int = 10,
        max_interval_ns: int | None = None,
        age_penalty: float = 0.1,
        inter_message_lower_bounds_ns: Sequence[int] | None = None,
    ) -> None:
        if num_topics < 1:
            raise ValueError(f"ApproximateTimeSync: num_topics must be >= 1, got {num_topics}")
        if queue_size < 1:
            raise ValueError(f"ApproximateTimeSync: queue_size must be >= 1, got {queue_size}")
        if max_interval_ns is not None and max_interval_ns < 0:
            raise ValueError(f"ApproximateTimeSync: max_interval_ns must be >= 0, got {max_interval_ns}")
        if age_penalty < 0:
            raise ValueError(f"ApproximateTimeSync: age_penalty must be >= 0, got {age_penalty}")
        bounds = list(inter_message_lower_bounds_ns or [0] * num_topics)
        if len(bounds) != num_topics or any(b < 0 for b in bounds):
            raise ValueError(
                f"ApproximateTimeSync: inter_message_lower_bounds_ns needs {num_topics} values >= 0, got {bounds}"
            )
        self._k = num_topics
        self._callback = callback
        self._queue_size = queue_size
        self._max_interval = max_interval_ns
        self._age_factor = 1.0 + age_penalty
        self._bounds = bounds
        self._lock = threading.Lock()
        self._clear()

    def reset(self, counters: bool = True) -> None:
        """Forget every queued message and each topic's newest stamp, and (counters) the counters."""
        with self._lock:
            stats = self.stats
            self._clear()
            if not counters:
                self.stats = stats

    def _clear(self) -> None:
        self._topics = [_Topic(lower_bound=b) for b in self._bounds]
        self._non_empty = 0  # topics with a non-empty queue
        self._pivot = _NO_PIVOT
        self._pivot_time = 0
        self._candidate: list[_Entry] | None = None
        self._cand_start = 0
        self._cand_end = 0
        self._ready: list[SyncedMessages] = []
        self.stats = SyncStats([0] * self._k, [0] * self._k, [0] * self._k)

    def add(self, topic_index: int, stamp_ns: int, msg: Any) -> None:
        """Queue `msg` (stamped `stamp_ns`) of topic `topic_index`; emits every set it completes."""
        if not 0 <= topic_index < self._k:
            raise IndexError(f"ApproximateTimeSync: topic_index {topic_index} outside [0, {self._k})")
        with self._lock:
            self._add(topic_index, int(stamp_ns), msg)
            ready, self._ready = self._ready, []
        for synced in ready:
            self._callback(synced)

    # --- the message_filters algorithm (all below runs under the lock) ---

    def _add(self, i: int, stamp: int, msg: Any) -> None:
        topic = self._topics[i]
        self.stats.received[i] += 1
        if topic.last_stamp is not None and stamp <= topic.last_stamp:
            self.stats.out_of_order[i] += 1
            return
        topic.last_stamp = stamp
        topic.queue.append(_Entry(stamp, msg))
        if len(topic.queue) == 1:
            self._non_empty += 1
            if self._non_empty == self._k:
                self._process()
        if len(topic.queue) + len(topic.past) > self._queue_size:
            # Abandon the running search, drop this topic's oldest message, and search again.
            self._non_empty = 0
            for t in self._topics:
                self._recover(t, len(t.past))
            topic.queue.popleft()
            self.stats.dropped_overflow[i] += 1
            topic.dropped = True
            if self._pivot != _NO_PIVOT:
                self._candidate = None
                self._pivot = _NO_PIVOT
                self._process()

    def _recover(self, topic: _Topic, count: int) -> None:
        """Move the last `count` past entries back to the queue front."""
        for _ in range(count):
            topic.queue.appendleft(topic.past.pop())
        if topic.queue:
            self._non_empty += 1

    def _delete_front(self, i: int) -> None:
        queue = self._topics[i].queue
        queue.popleft()
        if not queue:
            self._non_empty -= 1

    def _move_front_to_past(self, i: int) -> None:
        topic = self._topics[i]
        topic.past.append(topic.queue.popleft())
        if not topic.queue:
            self._non_empty -= 1

    def _make_candidate(self, start: int, end: int) -> None:
        self._candidate = [t.queue[0] for t in self._topics]
        for t in self._topics:
            t.past.clear()
        self._cand_start, self._cand_end = start, end

    def _publish_candidate(self) -> None:
        candidate = self._candidate
        self._ready.append(
            SyncedMessages(tuple(e.stamp for e in candidate), tuple(e.msg for e in candidate))
        )
        self.stats.sets += 1
        self._candidate = None
        self._pivot = _NO_PIVOT
        self._non_empty = 0
        for t in self._topics:  # restore parked entries; each queue front is then the published member
            while t.past:
                t.queue.appendleft(t.past.pop())
            t.queue.popleft()
            if t.queue:
                self._non_empty += 1

    def _fronts(self) -> tuple[int, int, int, int]:
        """(start_index, start_time, end_index, end_time) over the queue fronts (all non-empty)."""
        return _bounds([t.queue[0].stamp for t in self._topics])

    def _virtual_fronts(self) -> tuple[int, int, int, int]:
        """As `_fronts`, with each empty queue replaced by the earliest stamp its next message can have."""
        times = []
        for t in self._topics:
            if t.queue:
                times.append(t.queue[0].stamp)
            else:
                times.append(max(t.past[-1].stamp + t.lower_bound, self._pivot_time))
        return _bounds(times)

    def _process(self) -> None:
        while self._non_empty == self._k:
            start_index, start_time, end_index, end_time = self._fronts()
            for i, t in enumerate(self._topics):
                if i != end_index:
                    t.dropped = False
            if self._pivot == _NO_PIVOT:
                too_wide = self._max_interval is not None and end_time - start_time > self._max_interval
                if too_wide or self._topics[end_index].dropped:
                    self._delete_front(start_index)
                    continue
                self._make_candidate(start_time, end_time)
                self._pivot, self._pivot_time = end_index, end_time
                self._move_front_to_past(start_index)
            else:
                if (end_time - self._cand_end) * self._age_factor < start_time - self._cand_start:
                    self._make_candidate(start_time, end_time)
                self._move_front_to_past(start_index)

            if start_index == self._pivot:
                # Every set ending at the pivot has been examined: the candidate is the best.
                self._publish_candidate()
            elif (end_time - self._cand_end) * self._age_factor >= self._pivot_time - self._cand_start:
                # Any later set contains [pivot_time, end_time], already wider than the candidate.
                self._publish_candidate()
            elif self._non_empty < self._k:
                self._try_prove_optimal()

    def _try_prove_optimal(self) -> None:
        """Search ahead with optimistic stamps for the empty queues; publish if nothing can beat the candidate."""
        moves = [0] * self._k
        while True:
            start_index, start_time, _, end_time = self._virtual_fronts()
            if (end_time - self._cand_end) * self._age_factor >= self._pivot_time - self._cand_start:
                self._publish_candidate()
                return
            if (end_time - self._cand_end) * self._age_factor < start_time - self._cand_start:
                # An optimistic future set beats the candidate: undo the look-ahead and wait.
                self._non_empty = 0
                for t, count in zip(self._topics, moves):
                    self._recover(t, count)
                return
            self._move_front_to_past(start_index)
            moves[start_index] += 1


def _bounds(times: list[int]) -> tuple[int, int, int, int]:
    """Index/time of the earliest (first on ties) and latest (last on ties) stamp."""
    start_index = end_index = 0
    for i, t in enumerate(times):
        if t < times[start_index]:
            start_index = i
        if t >= times[end_index]:
            end_index = i
    return start_index, times[start_index], end_index, times[end_index]
