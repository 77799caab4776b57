"""Batches of ``(epoch, index)`` keys, one epoch after another, for loaders that outlive an epoch.

A DataLoader whose worker processes persist across epochs keeps the dataset object each worker
was forked with, so an epoch set on the training process's dataset never reaches them. The keys
of :class:`EpochBatches` carry their epoch instead, and :class:`~data_pipeline.ClipDataset`
draws an item's augmentation from the key's ``(seed, epoch, index)``: an item is the same whatever
process makes it, whenever it is made. The batches do not stop at an epoch's end, so a loader
prefetches the next epoch's first batches while the current epoch ends and validation runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from torch.utils.data import Sampler

__all__ = ["EpochBatches"]

Key = tuple[int, int]


class EpochBatches(Sampler[list[Key]]):
    """Batches of ``(epoch, index)`` for epochs ``start``, ``start + 1``, ... without end.

    ``order(epoch)`` gives the indices of an epoch in the order they are visited; each epoch is
    cut into batches of ``batch_size`` (the last one dropped when shorter and ``drop_last``), and
    no batch spans two epochs. Set :attr:`start` before a loader starts iterating.
    """

    def __init__(
        self,
        order: Callable[[int], Sequence[int]],
        size: int,
        batch_size: int,
        *,
        drop_last: bool,
        start: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        self.order = order
        self.size = size
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.start = start

    @property
    def batches_per_epoch(self) -> int:
        if self.drop_last:
            return self.size // self.batch_size
        return -(-self.size // self.batch_size)

    def __iter__(self) -> Iterator[list[Key]]:
        epoch = self.start
        while True:
            indices = list(self.order(epoch))
            for b in range(self.batches_per_epoch):
                chunk = indices[b * self.batch_size : (b + 1) * self.batch_size]
                yield [(epoch, i) for i in chunk]
            epoch += 1

    def __len__(self) -> int:
        raise TypeError("EpochBatches has no end; count batches with batches_per_epoch")
