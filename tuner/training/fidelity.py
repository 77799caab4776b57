"""Fidelity schedules: the clip length and crop a trial trains with, epoch by epoch.

A search whose ``scheduler`` block has ``rungs`` (docs/search-spaces.md, "Fidelity schedules")
trains every trial's first epochs on cheaper clips: fewer frames per clip, smaller crops. Each
rung ends at an epoch; up to it the trial trains and validates at the rung's ``frames`` and
``crop_size``, and ASHA compares the trials there. A trial it promotes goes on in the same run
at the next rung's size, and after the last rung at the trial's own ``frames`` and ``crop_size``.

What a promotion keeps and what it changes (:class:`tuner.training.engine.Trainer`):

- kept: every weight, the optimiser's state (Adam's moments are per parameter, whatever the
  clip's shape), the learning-rate schedule (its milestones count the trial's epochs, whatever
  size they ran at), the data order and the best epoch so far;
- changed: the training and validation clips (the loaders and the frame store are rebuilt at the
  new size, validation at the new size from then on), so the epochs after a promotion compare
  with the full-size trials of a grid, and the ones before it do not.

The models are convolutional in space and recurrent in time, so the same weights run on any clip
length and on any crop whose feature maps keep the sizes the heads were built for: the MS head is
a fully connected layer over the ``ms_layer`` map (7x7 at conv5 for 224 pixels), so with an MS
model a rung's crop must give the same map side (193 to 224 pixels at conv5). Searches check
this before training (:func:`tuner.training.cost.check_rung_shapes`).

The schedule travels in a trial's Tune config under :data:`FIDELITY_KEY`, beside the training
configuration (it is how the search runs the trial, not what the trial computes at full size).
This module does not import ray or torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["FIDELITY_KEY", "FidelitySchedule", "Rung"]

FIDELITY_KEY = "_fidelity"
"""Key of a trial's Tune config holding its schedule (``[[until, frames, crop_size], ...]``)."""


@dataclass(frozen=True)
class Rung:
    """Epochs up to and including ``until`` train at ``frames`` and ``crop_size`` (``None``: the
    trial's own value)."""

    until: int
    frames: int | None = None
    crop_size: int | None = None

    def to_list(self) -> list[int | None]:
        return [self.until, self.frames, self.crop_size]


@dataclass(frozen=True)
class FidelitySchedule:
    """Rungs in epoch order; after the last one the trial trains at its own size."""

    rungs: tuple[Rung, ...] = ()

    @classmethod
    def from_config(cls, value: Any) -> FidelitySchedule:
        """The schedule a trial's Tune config carries (``None``: no schedule)."""
        if not value:
            return cls()
        return cls(tuple(Rung(int(until), frames, crop) for until, frames, crop in value))

    def to_config(self) -> list[list[int | None]]:
        return [rung.to_list() for rung in self.rungs]

    @property
    def milestones(self) -> tuple[int, ...]:
        """The epochs the rungs end at: where ASHA compares the trials."""
        return tuple(rung.until for rung in self.rungs)

    def size_at(self, epoch: int, frames: int, crop_size: int) -> tuple[int, int]:
        """``(frames, crop_size)`` of ``epoch`` (1-based) for a trial of ``frames`` and
        ``crop_size``."""
        for rung in self.rungs:
            if epoch <= rung.until:
                return rung.frames or frames, rung.crop_size or crop_size
        return frames, crop_size

    def segments(self, epochs: int, frames: int, crop_size: int) -> list[tuple[int, int, int, int]]:
        """``(first epoch, last epoch, frames, crop_size)`` of each stretch of a trial of
        ``epochs`` epochs, the full-size stretch last (when the rungs leave epochs to it)."""
        out: list[tuple[int, int, int, int]] = []
        first = 1
        for rung in self.rungs:
            last = min(rung.until, epochs)
            if last >= first:
                out.append((first, last, rung.frames or frames, rung.crop_size or crop_size))
            first = last + 1
        if first <= epochs:
            out.append((first, epochs, frames, crop_size))
        return out
