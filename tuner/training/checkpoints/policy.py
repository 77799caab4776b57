"""When a run writes its resume state (the policy of :mod:`.writer`); imports neither torch nor
the configuration, which checks ``checkpoint_every`` with :func:`check_checkpoint_every`."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["AUTO", "AUTO_SHARE", "CheckpointPolicy", "auto_every", "check_checkpoint_every"]

AUTO = "auto"
AUTO_SHARE = 0.05
"""Share of the training time the ``auto`` policy lets checkpointing take."""
_MAX_EVERY = 10_000


def check_checkpoint_every(every: Any) -> None:
    if every != AUTO and (not isinstance(every, int) or isinstance(every, bool) or every < 1):
        raise ValueError(f"checkpoint_every: must be auto or an integer >= 1, got {every!r}")


def auto_every(snapshot_s: float, write_s: float, epoch_s: float, share: float = AUTO_SHARE) -> int:
    """Epochs between checkpoints so that checkpointing costs at most ``share`` of the epochs.

    The snapshot blocks the training loop; the write runs beside it but takes the node's disk,
    memory bandwidth and a CPU core from the data loader, so the rule counts both in full:
    ``every >= (snapshot_s + write_s) / (share * epoch_s)``.
    """
    if epoch_s <= 0:
        return 1
    every = math.ceil((max(snapshot_s, 0.0) + max(write_s, 0.0)) / (share * epoch_s))
    return min(max(every, 1), _MAX_EVERY)


class CheckpointPolicy:
    """When a run writes its resume state: every ``every`` epochs (``auto``: :func:`auto_every`
    on the last measured epoch, snapshot and write), at each stage end and at the end."""

    def __init__(self, every: int | str = AUTO) -> None:
        check_checkpoint_every(every)
        self.auto = every == AUTO
        self.every = 1 if self.auto else int(every)
        self.last_epoch = 0
        self._snapshot_s = 0.0
        self._write_s: float | None = None

    def due(self, epoch: int, *, stage_end: bool = False, last: bool = False) -> bool:
        """Whether the state after ``epoch`` is written."""
        return last or stage_end or epoch - self.last_epoch >= self.every

    def taken(self, epoch: int, snapshot_s: float) -> None:
        self.last_epoch = epoch
        self._snapshot_s = snapshot_s

    def observe(self, *, epoch_s: float, write_s: float | None = None) -> None:
        """Measurements of the last epoch and, once known, of the last write."""
        if write_s is not None:
            self._write_s = write_s
        if self.auto and self._write_s is not None:
            self.every = auto_every(self._snapshot_s, self._write_s, epoch_s)
