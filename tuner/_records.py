"""What an epoch reports: :class:`EpochRecord`, and the running totals it is computed from."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor

__all__ = ["TIME_FIELDS", "EpochRecord", "EpochTotals"]


TIME_FIELDS = ("seconds", "clips_per_s", "data_wait_frac")
"""Fields of an :class:`EpochRecord` that measure time and so differ between identical runs."""


@dataclass
class EpochRecord:
    """What the engine reports after each epoch (accuracies in percent, as in the report)."""

    epoch: int
    """Global epoch number, 1-based, increasing across stages."""
    stage: int
    stage_epoch: int
    """Epoch number within the stage, 1-based."""
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    """Learning rate of the first optimiser group during this epoch."""
    best_val_acc: float
    """Best validation accuracy of the current stage so far."""
    best_epoch: int
    """Global epoch of ``best_val_acc``."""
    seconds: float
    clips_per_s: float
    """Training clips per second of this epoch."""
    data_wait_frac: float
    """Fraction of the training time spent waiting for batches."""
    ms_loss: float | None = None
    sd_loss: float | None = None

    @property
    def is_best(self) -> bool:
        return self.best_epoch == self.epoch

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping without the auxiliary losses this model does not have."""
        return {k: v for k, v in asdict(self).items() if v is not None}


class EpochTotals:
    """Sample-weighted running means of the losses and the accuracy of one epoch."""

    def __init__(self, aux_names: tuple[str, ...]) -> None:
        self.count = 0
        self.correct = 0
        self.loss = 0.0
        self.aux = dict.fromkeys(aux_names, 0.0)
        self.aux_count = 0

    def add(self, out: Any, labels: Tensor) -> None:
        size = int(labels.shape[0])
        self.count += size
        self.correct += int((out.logits.argmax(dim=1) == labels).sum())
        self.loss += float(out.action_loss.detach()) * size
        if out.aux:
            self.aux_count += size
            for name, value in out.aux.items():
                self.aux[name] += float(value.detach()) * size

    def summary(self) -> dict[str, float]:
        count = max(self.count, 1)
        result = {"loss": self.loss / count, "acc": 100.0 * self.correct / count}
        result["clips"] = float(self.count)
        if self.aux_count:
            result.update({k: v / self.aux_count for k, v in self.aux.items()})
        return result
