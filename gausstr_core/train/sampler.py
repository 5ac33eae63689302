"""A distributed, seeded, resumable sampler: the order depends only on (seed, epoch)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableDistributedSampler(Sampler[int]):
    """Shards a shuffled permutation across ranks and can start mid-epoch.

    Every rank draws the same permutation from (seed, epoch), pads it to a multiple of
    `num_replicas` and takes indices rank, rank + R, ... . `set_epoch(e, start=k)` skips the first
    k indices of this rank's shard (the samples already consumed before a resume).
    """

    def __init__(self, length: int, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0):
        if length <= 0:
            raise ValueError("ResumableDistributedSampler: empty dataset")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"ResumableDistributedSampler: rank {rank} outside 0..{num_replicas - 1}")
        self.length, self.num_replicas, self.rank = length, num_replicas, rank
        self.shuffle, self.seed = shuffle, seed
        self.epoch = 0
        self.start = 0

    @property
    def shard_size(self) -> int:
        return -(-self.length // self.num_replicas)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        if not 0 <= start <= self.shard_size:
            raise ValueError(f"ResumableDistributedSampler: start {start} outside 0..{self.shard_size}")
        self.epoch, self.start = epoch, start

    def shard(self) -> list[int]:
        """This rank's full index list for the current epoch."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        padded = order + order[: self.shard_size * self.num_replicas - self.length]
        return padded[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard()[self.start :])

    def __len__(self) -> int:
        return self.shard_size - self.start
