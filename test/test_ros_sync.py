"""ApproximateTimeSync on nuScenes-like staggered camera streams (pure Python, no ROS)."""

from __future__ import annotations

import random

import pytest

from gausstr_ros.sync import ApproximateTimeSync, SyncedMessages

PERIOD_NS = 83_333_333  # 12 Hz cameras
OFFSETS_NS = [0, 9_000_000, 17_000_000, 26_000_000, 35_000_000, 44_000_000]  # ~45 ms stagger
SLOP_NS = 60_000_000


def sweep_messages(num_sweeps: int, rng: random.Random, jitter_ns: int = 2_000_000) -> list[tuple[int, int, tuple]]:
    """(camera, stamp_ns, (sweep, camera)) for every camera of every sweep, in stamp order."""
    msgs = []
    for k in range(num_sweeps):
        for cam, offset in enumerate(OFFSETS_NS):
            stamp = 1_000_000_000 + k * PERIOD_NS + offset + rng.randint(-jitter_ns, jitter_ns)
            msgs.append((cam, stamp, (k, cam)))
    return sorted(msgs, key=lambda m: m[1])


def arrival_order(msgs: list, rng: random.Random, max_latency_ns: int) -> list:
    """Shuffle across topics by a random transport latency per message."""
    return [m for _, m in sorted(((m[1] + rng.randint(0, max_latency_ns), m) for m in msgs), key=lambda x: x[0])]


def run(msgs: list, **kwargs) -> tuple[list[SyncedMessages], ApproximateTimeSync]:
    out: list[SyncedMessages] = []
    sync = ApproximateTimeSync(len(OFFSETS_NS), out.append, **kwargs)
    for cam, stamp, payload in msgs:
        sync.add(cam, stamp, payload)
    return out, sync


def sweep_of(s: SyncedMessages) -> int:
    sweeps = {k for k, _ in s.messages}
    assert len(sweeps) == 1, f"set mixes sweeps {sorted(sweeps)}: {s.messages}"
    assert [cam for _, cam in s.messages] == list(range(len(OFFSETS_NS)))
    return sweeps.pop()


@pytest.mark.parametrize("seed", range(5))
def test_staggered_cameras_with_transport_reordering_give_every_sweep_once(seed):
    rng = random.Random(seed)
    msgs = arrival_order(sweep_messages(40, rng), rng, max_latency_ns=70_000_000)
    assert [m[0] for m in msgs] != sorted(m[0] for m in msgs)  # really interleaved
    sets, sync = run(msgs, queue_size=10, max_interval_ns=SLOP_NS)
    sweeps = [sweep_of(s) for s in sets]
    # The last sweep may legitimately wait for a proof of optimality that needs later messages.
    assert sweeps == list(range(len(sweeps))) and len(sweeps) >= 39
    assert all(s.spread_ns <= 50_000_000 for s in sets)
    assert sync.stats.sets == len(sets)
    assert sum(sync.stats.received) == len(msgs)


@pytest.mark.parametrize("seed", range(5))
def test_drops_never_mix_sweeps_and_keep_complete_ones(seed):
    rng = random.Random(100 + seed)
    full = sweep_messages(60, rng)
    kept = [m for m in full if rng.random() > 0.1]
    msgs = arrival_order(kept, rng, max_latency_ns=40_000_000)
    sets, _ = run(msgs, queue_size=10, max_interval_ns=SLOP_NS)
    emitted = [sweep_of(s) for s in sets]
    assert emitted == sorted(set(emitted))
    complete = [k for k in range(60) if sum(1 for m in kept if m[2][0] == k) == len(OFFSETS_NS)]
    assert len(complete) < 50  # drops really hit many sweeps
    assert set(emitted) <= set(complete)
    assert set(complete[:-1]) <= set(emitted)


def test_same_topic_reordering_drops_the_late_old_message():
    rng = random.Random(7)
    msgs = sweep_messages(6, rng)
    # CAM_BACK (index 3) of sweep 2 arrives after its sweep-3 message.
    late = next(m for m in msgs if m[2] == (2, 3))
    msgs.remove(late)
    msgs.insert(msgs.index(next(m for m in msgs if m[2] == (3, 3))) + 1, late)
    sets, sync = run(msgs, max_interval_ns=SLOP_NS)
    assert sync.stats.out_of_order == [0, 0, 0, 1, 0, 0]
    emitted = [sweep_of(s) for s in sets]
    assert 2 not in emitted and {0, 1, 3, 4} <= set(emitted)


def test_missing_camera_overflows_then_recovers():
    rng = random.Random(3)
    msgs = sweep_messages(30, rng)
    silent = [m for m in msgs if not (m[0] == 5 and m[2][0] < 20)]  # camera 5 silent for 20 sweeps
    sets, sync = run(silent, queue_size=5, max_interval_ns=SLOP_NS)
    emitted = [sweep_of(s) for s in sets]
    assert emitted and min(emitted) >= 20 and len(emitted) >= 9
    assert sync.stats.dropped_overflow[5] == 0
    assert all(sync.stats.dropped_overflow[c] >= 20 - 5 for c in range(5))
    assert all(len(t.queue) + len(t.past) <= 5 for t in sync._topics)


def test_burst_keeps_memory_bounded_and_sets_clean():
    rng = random.Random(11)
    msgs = sweep_messages(200, rng)  # everything delivered at once, 10x+ faster than real time
    sets, sync = run(msgs, queue_size=10, max_interval_ns=SLOP_NS)
    assert [sweep_of(s) for s in sets] == list(range(len(sets)))
    assert len(sets) >= 199
    assert all(len(t.queue) + len(t.past) <= 10 for t in sync._topics)


def test_picks_minimal_spread_not_first_match():
    out: list[SyncedMessages] = []
    sync = ApproximateTimeSync(2, out.append, max_interval_ns=50)
    sync.add(0, 0, "a0")
    sync.add(1, 48, "b0")
    assert out == []  # (a0, b0) fits the slop but a better set may still come
    sync.add(0, 50, "a1")
    assert [s.messages for s in out] == [("a1", "b0")] and out[0].spread_ns == 2


def test_slop_rejects_wide_sets():
    out: list[SyncedMessages] = []
    sync = ApproximateTimeSync(2, out.append, max_interval_ns=10)
    for stamp_a, stamp_b in [(0, 30), (100, 130), (200, 205)]:
        sync.add(0, stamp_a, stamp_a)
        sync.add(1, stamp_b, stamp_b)
    sync.add(0, 300, 300)
    sync.add(1, 302, 302)
    assert [s.messages for s in out] == [(200, 205)]


def test_inter_message_lower_bound_emits_without_waiting_for_next_sweep():
    rng = random.Random(5)
    first = sweep_messages(1, rng)
    waited, _ = run(first, max_interval_ns=SLOP_NS)
    assert waited == []  # without a bound the sync cannot know no better set will come
    bound = [int(0.9 * PERIOD_NS)] * len(OFFSETS_NS)
    prompt, _ = run(first, max_interval_ns=SLOP_NS, inter_message_lower_bounds_ns=bound)
    assert [sweep_of(s) for s in prompt] == [0]


def test_callback_may_feed_the_sync_again():
    out: list[SyncedMessages] = []

    def callback(s: SyncedMessages) -> None:
        out.append(s)
        if len(out) == 1:
            sync.add(0, 1000, "again")  # would deadlock if called under the lock

    sync = ApproximateTimeSync(2, callback, inter_message_lower_bounds_ns=[100, 100])
    sync.add(0, 0, "a")
    sync.add(1, 1, "b")
    assert [s.messages for s in out] == [("a", "b")]
    assert sync.stats.received == [2, 1]


def test_reset_forgets_queues_and_counters():
    out: list[SyncedMessages] = []
    sync = ApproximateTimeSync(2, out.append)
    sync.add(0, 10, "x")
    sync.reset()
    sync.add(0, 5, "y")  # not out of order after a reset
    assert sync.stats.received == [1, 0] and sync.stats.out_of_order == [0, 0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_topics": 0}, "num_topics"),
        ({"queue_size": 0}, "queue_size"),
        ({"max_interval_ns": -1}, "max_interval_ns"),
        ({"age_penalty": -0.5}, "age_penalty"),
        ({"inter_message_lower_bounds_ns": [1]}, "inter_message_lower_bounds_ns"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    args = {"num_topics": 2, "callback": print} | kwargs
    with pytest.raises(ValueError, match=match):
        ApproximateTimeSync(**args)


def test_bad_topic_index():
    sync = ApproximateTimeSync(2, print)
    with pytest.raises(IndexError, match="topic_index 2"):
        sync.add(2, 0, None)


def test_reset_can_keep_the_counters():
    sync = ApproximateTimeSync(2, lambda s: None)
    sync.add(0, 10, "x")
    sync.add(0, 9, "old")
    sync.reset(counters=False)
    sync.add(0, 5, "y")
    assert sync.stats.received == [3, 0] and sync.stats.out_of_order == [1, 0]


SEC = 1_000_000_000


def test_stamp_guard_drops_future_stamps_except_while_the_clock_is_zero():
    from gausstr_ros.stamp_guard import StampGuard, Verdict

    guard = StampGuard(2, max_future_ns=2 * SEC, jump_tolerance_ns=SEC)
    assert guard.check(0, 3600 * SEC, now_ns=100 * SEC).verdict is Verdict.FUTURE
    assert guard.check(0, 101 * SEC, now_ns=100 * SEC).verdict is Verdict.ACCEPT
    assert guard.check(1, 3600 * SEC, now_ns=0).verdict is Verdict.ACCEPT  # sim clock not started yet


def test_stamp_guard_one_stale_stream_is_no_jump_all_streams_together_are():
    from gausstr_ros.stamp_guard import StampGuard, Verdict

    guard = StampGuard(3, max_future_ns=SEC, jump_tolerance_ns=SEC)
    for i in range(3):
        assert guard.check(i, 50 * SEC + i, 0, f"a{i}").verdict is Verdict.ACCEPT
    assert guard.check(0, 50 * SEC - 1, 0).verdict is Verdict.ACCEPT  # within the tolerance: the sync drops it
    # one camera alone 1 h back: held, then discarded by its next normal message
    assert guard.check(1, 10 * SEC, 0, "stale").verdict is Verdict.HELD
    check = guard.check(1, 51 * SEC, 0, "b1")
    assert check.verdict is Verdict.ACCEPT and check.discarded == (10 * SEC, "stale")
    # all cameras jump back (a bag loop): the last one completes the jump, the held ones are replayed
    assert guard.check(2, 1 * SEC + 2, 0, "c2").verdict is Verdict.HELD
    assert guard.check(0, 1 * SEC, 0, "c0").verdict is Verdict.HELD
    assert guard.check(1, 1 * SEC + 1, 0, "c1").verdict is Verdict.JUMP
    assert [item for _, _, item in guard.take_held()] == ["c0", "c1", "c2"]
    assert guard.check(0, 1 * SEC, 0).verdict is Verdict.ACCEPT  # newest stamps forgotten


def test_stamp_guard_clock_jump_back_beyond_the_tolerance():
    from gausstr_ros.stamp_guard import StampGuard, Verdict

    guard = StampGuard(1, max_future_ns=SEC, jump_tolerance_ns=SEC)
    assert not guard.clock(100 * SEC)
    assert not guard.clock(99 * SEC + 1)  # within the tolerance
    assert guard.clock(10 * SEC)
    assert not guard.clock(11 * SEC)
    assert guard.check(0, 11 * SEC, 11 * SEC).verdict is Verdict.ACCEPT
    assert guard.clock(5 * SEC)  # the stream still holds 11 s
    assert guard.take_held() == [] and guard.check(0, 5 * SEC, 5 * SEC).verdict is Verdict.ACCEPT
    assert not guard.clock(20 * SEC) and not guard.clock(5 * SEC)  # the stream is at 5 s already: no reset
