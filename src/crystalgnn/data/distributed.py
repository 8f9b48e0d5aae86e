"""Loaders that split every epoch over the processes of a DDP run without repeating a crystal.

Lightning's default under DDP wraps each loader in a ``DistributedSampler``, which pads the epoch
with repeated items so that every rank gets as many: some crystals count twice per epoch (in the
gradient and in the validation metrics). Here instead:

- :class:`EpochOrder` draws epoch ``e``'s order from ``(seed, e)`` alone, so every rank, and a
  resumed run, computes the same order without sharing random state;
- :class:`DistributedBatchSampler` cuts any such rank-independent order into *global* batches of
  ``batch_size × world_size`` (a last global batch too small to give every rank two crystals
  joins the one before it: batch norm cannot normalise a lone crystal, the rule of
  :class:`~crystalgnn.data.prepared.NoLoneBatchSampler`) and gives rank ``r`` its contiguous
  share of each, so every rank takes the same number of steps (DDP's gradient all-reduce never
  waits for a rank that has run out) and the ranks together see every crystal exactly once;
- :class:`ShardBatchSampler` gives each rank a contiguous block of the validation items, in
  order and unpadded (ranks may then run one batch more or less, which validation allows).

World size and rank are read from ``torch.distributed`` when the loader is iterated, not when it
is built: under Lightning's own launcher the first process builds its loaders before the others
exist. Without a process group they are 1 and 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from crystalgnn.data.prepared import Collator, PreparedData, _IndexDataset


def world() -> tuple[int, int]:
    """``(world_size, rank)`` of the default process group; ``(1, 0)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class EpochOrder(Sampler[int]):
    """Positions ``0..n-1`` in an order drawn from ``(seed, epoch)`` alone (numpy's seed sequence:
    no two (seed, epoch) pairs share a stream), the same in every process. Lightning calls
    :meth:`set_epoch` at the start of every epoch, also of a resumed run, so a resumed run
    replays the interrupted one's orders."""

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        self.n = int(n)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.n)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())

    def __len__(self) -> int:
        return self.n


def global_batches(order: np.ndarray, batch_size: int, world_size: int) -> list[np.ndarray]:
    """``order`` cut into global batches of ``batch_size × world_size``; a last one that cannot give
    every rank two crystals joins the batch before it (when there is one)."""
    size = batch_size * world_size
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    if len(batches) > 1 and len(batches[-1]) < 2 * world_size:
        batches[-2:] = [np.concatenate(batches[-2:])]
    return batches


class DistributedBatchSampler(Sampler[list[int]]):
    """Rank ``rank``'s share of every global batch of ``sampler``'s order (see the module
    docstring): per epoch the same number of batches on every rank, every position once over
    all ranks, no batch of one crystal.

    ``sampler``: any sampler of dataset positions whose order is the same in every process for a
    given epoch (:class:`EpochOrder`, or another rank-independent order, e.g. a shard-aware
    shuffle); Lightning finds it as ``batch_sampler.sampler`` and calls its ``set_epoch``.
    ``world_size``, ``rank``: fixed values (tests); None: from ``torch.distributed`` at iteration.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, world_size: int | None = None, rank: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self._world_size = world_size
        self._rank = rank

    def world(self) -> tuple[int, int]:
        size, rank = world()
        return (self._world_size or size, rank if self._rank is None else self._rank)

    def set_epoch(self, epoch: int) -> None:
        if callable(getattr(self.sampler, "set_epoch", None)):
            self.sampler.set_epoch(epoch)  # type: ignore[attr-defined]

    def __iter__(self) -> Iterator[list[int]]:
        world_size, rank = self.world()
        order = np.fromiter(iter(self.sampler), dtype=np.int64)
        if len(order) < 2 * world_size:
            raise ValueError(f"{len(order)} training crystal(s) cannot give each of {world_size} processes two per batch; "
                             "train on more crystals or with fewer processes")
        for batch in global_batches(order, self.batch_size, world_size):
            yield np.array_split(batch, world_size)[rank].tolist()

    def __len__(self) -> int:
        world_size, _ = self.world()
        n = len(self.sampler)  # type: ignore[arg-type]
        full, rest = divmod(n, self.batch_size * world_size)
        return max(1, full + (rest > 0) - (0 < rest < 2 * world_size and full > 0))


class ShardBatchSampler(Sampler[list[int]]):
    """Rank ``rank``'s contiguous block of positions ``0..n-1`` (blocks differ by at most one
    item), in order and in batches of ``batch_size``, nothing repeated: for validation, whose
    metrics Lightning sums over ranks (``sync_dist``) weighted by each batch's size."""

    def __init__(self, data_source: Sized, batch_size: int, world_size: int | None = None, rank: int | None = None) -> None:
        self.n = len(data_source)
        self.batch_size = int(batch_size)
        self._world_size = world_size
        self._rank = rank

    def _block(self) -> np.ndarray:
        size, rank = world()
        world_size, rank = (self._world_size or size, rank if self._rank is None else self._rank)
        if self.n < world_size:
            raise ValueError(f"{self.n} validation crystal(s) cannot give each of {world_size} processes one; "
                             "validate on more crystals or train with fewer processes")
        return np.array_split(np.arange(self.n), world_size)[rank]

    def __iter__(self) -> Iterator[list[int]]:
        block = self._block()
        for start in range(0, len(block), self.batch_size):
            yield block[start : start + self.batch_size].tolist()

    def __len__(self) -> int:
        return -(-len(self._block()) // self.batch_size)


def make_distributed_loader(
    data: PreparedData,
    indices: np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
) -> DataLoader:
    """:func:`~crystalgnn.data.prepared.make_loader` for a run of several processes: training
    (``shuffle``) through :class:`DistributedBatchSampler` over :class:`EpochOrder` (``batch_size``
    per rank), validation through :class:`ShardBatchSampler`. Build the Trainer with
    ``use_distributed_sampler=False`` so that Lightning keeps these samplers."""
    dataset = _IndexDataset(indices)
    sampler: Sampler[list[int]]
    if shuffle:
        sampler = DistributedBatchSampler(EpochOrder(len(dataset), seed), batch_size)
    else:
        sampler = ShardBatchSampler(dataset, batch_size)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                      collate_fn=Collator(data.store, data.targets, data.extra, data.base), persistent_workers=num_workers > 0)
