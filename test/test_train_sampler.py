"""ResumableDistributedSampler: disjoint covering shards, per-epoch order, mid-epoch start."""

from __future__ import annotations

import pytest

from gausstr_core.train.sampler import ResumableDistributedSampler


@pytest.mark.parametrize("length, replicas", [(10, 1), (10, 2), (11, 3), (5, 2), (2, 4)])
def test_shards_cover_the_dataset_and_are_disjoint_up_to_padding(length: int, replicas: int) -> None:
    shards = [list(ResumableDistributedSampler(length, replicas, rank, seed=3)) for rank in range(replicas)]
    size = -(-length // replicas)
    assert all(len(s) == size for s in shards)
    flat = [i for s in shards for i in s]
    assert set(flat) == set(range(length))
    # only the padding (size * replicas - length indices) repeats anything
    assert len(flat) - len(set(flat)) == size * replicas - length


def test_order_depends_on_seed_and_epoch_only() -> None:
    a, b = ResumableDistributedSampler(20, seed=1), ResumableDistributedSampler(20, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and sorted(a) == sorted(first)
    assert list(ResumableDistributedSampler(20, seed=2)) != first
    assert list(ResumableDistributedSampler(20, shuffle=False)) == list(range(20))


def test_start_skips_the_consumed_part_of_the_shard() -> None:
    sampler = ResumableDistributedSampler(9, 2, 1, seed=5)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_epoch(3, start=2)
    assert list(sampler) == full[2:]
    assert len(sampler) == len(full) - 2
    sampler.set_epoch(3, start=len(full))
    assert list(sampler) == []


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="empty dataset"):
        ResumableDistributedSampler(0)
    with pytest.raises(ValueError, match="rank 2"):
        ResumableDistributedSampler(4, 2, 2)
    with pytest.raises(ValueError, match="start 4"):
        ResumableDistributedSampler(6, 2, 0).set_epoch(0, start=4)
