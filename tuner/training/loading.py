"""A run's batches from loaders made once per run, never per epoch.

At GPU pace an epoch's training steps take a few tenths of a second (the Fig. 10 model: about
0.3 s on an H200), while a DataLoader made afresh forks its worker processes and waits for their
first batches: a second per epoch measured there, for training and again for validation.
:class:`BatchStream` makes its DataLoader once, with workers that live as long as the run. Its
batches carry their epoch in every key (:class:`data_pipeline.EpochBatches`), so the workers make
the same items an epoch's own loader would, and they never stop at an epoch's end: while an epoch
ends and validation runs they already make the next epoch's first batches.

A worker's error reaches the training loop at the batch it failed on, as with any DataLoader.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from data_pipeline import EpochBatches

__all__ = ["BatchStream", "emulate_loader_seed_draw"]


class BatchStream:
    """Epoch after epoch of ``dataset`` in batches, from one DataLoader.

    ``order(epoch)`` lists an epoch's indices in visiting order. :meth:`epoch` yields the batches
    of one epoch; asking for the epoch after the last one read continues where the workers are,
    any other epoch (the first, a resume, an interrupted epoch) repositions them, which costs
    the batches already made but forks nothing.
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        *,
        size: int,
        order: Callable[[int], Sequence[int]],
        batch_size: int,
        drop_last: bool,
        num_workers: int,
        pin_memory: bool,
    ) -> None:
        self.sampler = EpochBatches(order, size, batch_size, drop_last=drop_last)
        self.loader: DataLoader[Any] = DataLoader(
            dataset,
            batch_sampler=self.sampler,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=num_workers > 0,
            # its own generator: making an iterator draws a worker seed from it, not from the
            # global generator that dropout uses
            generator=torch.Generator(),
        )
        self._iterator: Iterator[Any] | None = None
        self._next_epoch: int | None = None

    @property
    def batches_per_epoch(self) -> int:
        return self.sampler.batches_per_epoch

    def epoch(self, epoch: int) -> Iterator[Any]:
        """The batches of ``epoch``."""
        if self._iterator is None or self._next_epoch != epoch:
            self.sampler.start = epoch
            self._iterator = iter(self.loader)  # persistent workers: reset, not forked again
        self._next_epoch = None  # an epoch left unfinished repositions the next call
        for _ in range(self.batches_per_epoch):
            yield next(self._iterator)
        self._next_epoch = epoch + 1

    def close(self) -> None:
        """Stop the worker processes (the stream cannot be read afterwards)."""
        iterator = getattr(self.loader, "_iterator", None)  # where persistent workers live
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        self.loader._iterator = None
        self._iterator = None
        self._next_epoch = None


def emulate_loader_seed_draw() -> None:
    """Advance the global generator as making a DataLoader iterator does (one int64 draw).

    Earlier versions made a loader every epoch, right after seeding the epoch, so dropout on the
    CPU drew its masks after that draw; the same draw keeps those runs, their metrics and their
    checkpoints exact continuations of each other.
    """
    torch.empty((), dtype=torch.int64).random_()
