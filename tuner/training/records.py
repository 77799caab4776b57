"""What an epoch reports: :class:`EpochRecord`, and the running totals it is computed from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import Tensor

__all__ = ["TIME_FIELDS", "TOP_K", "EpochRecord", "EpochTotals", "video_predictions"]

TOP_K = 5
"""Classes kept per validation video in the predictions."""


TIME_FIELDS = (
    "seconds",
    "clips_per_s",
    "data_wait_frac",
    "train_s",
    "data_wait_s",
    "val_s",
    "checkpoint_s",
    "report_s",
    "startup_s",
)
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
    train_s: float = 0.0
    """Seconds of the training phase spent computing (on CUDA, until its kernels finished)."""
    data_wait_s: float = 0.0
    """Seconds of the training phase spent waiting for the next batch."""
    val_s: float = 0.0
    """Seconds of validation."""
    ms_loss: float | None = None
    sd_loss: float | None = None
    frames: int | None = None
    """Frames per clip this epoch trained and validated at (fewer on a fidelity rung)."""
    crop_size: int | None = None
    """Crop side this epoch trained and validated at."""
    flops: float | None = None
    """Counted FLOPs of the epoch's training steps and validation (:mod:`tuner.training.cost`)."""
    predictions: dict[str, list[Any]] | None = field(default=None, repr=False)
    """This epoch's validation outcome per video (:func:`video_predictions`); not a metric."""

    @property
    def is_best(self) -> bool:
        return self.best_epoch == self.epoch

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping of the metrics, without the auxiliary losses this model does not have
        (and without :attr:`predictions`)."""
        values = asdict(self)
        values.pop("predictions")
        return {k: v for k, v in values.items() if v is not None}


class EpochTotals:
    """Sample-weighted running means of the losses and the accuracy of one epoch.

    Sums stay on the device the step ran on and are read once, by :meth:`summary`: a read per
    batch would make the host wait for every batch's kernels before queueing the next batch.
    """

    def __init__(self, aux_names: tuple[str, ...]) -> None:
        self.count = 0
        self.sums: dict[str, Tensor] = {}
        self.aux_names = aux_names
        self.aux_count = 0

    def add(self, out: Any, labels: Tensor) -> None:
        size = int(labels.shape[0])
        self.count += size
        self._add("correct", (out.logits.detach().argmax(dim=1) == labels).sum())
        self._add("loss", out.action_loss.detach() * size)
        self._add("nonfinite", out.loss.detach().isfinite().logical_not())
        if out.aux:
            self.aux_count += size
            for name, value in out.aux.items():
                self._add(name, value.detach() * size)

    def _add(self, name: str, value: Tensor) -> None:
        value = value.double()
        self.sums[name] = value if name not in self.sums else self.sums[name] + value

    def finite(self) -> bool:
        """Whether every total loss added so far was finite (one read of the device)."""
        flagged = self.sums.get("nonfinite")
        return flagged is None or float(flagged) == 0

    def summary(self) -> dict[str, float]:
        values = {k: float(v) for k, v in self.sums.items()}
        count = max(self.count, 1)
        result = {
            "loss": values.get("loss", 0.0) / count,
            "acc": 100.0 * values.get("correct", 0.0) / count,
            "clips": float(self.count),
        }
        if self.aux_count:
            result.update({k: values[k] / self.aux_count for k in self.aux_names if k in values})
        return result


def video_predictions(
    probabilities: Tensor, labels: Tensor, videos: Sequence[Any], classes: Sequence[str]
) -> dict[str, list[Any]]:
    """Per validation video: its name (``user/class/instance``), user, true and predicted class,
    the probability of the true class and the :data:`TOP_K` most probable classes with theirs.

    ``probabilities`` (N, C) and ``labels`` (N,) may live on the GPU; they come to the host once.
    """
    k = min(TOP_K, probabilities.shape[1])
    top_p, top_i = probabilities.topk(k, dim=1)
    p_true = probabilities.gather(1, labels.view(-1, 1)).squeeze(1)
    host = [t.cpu() for t in (top_p, top_i, p_true, labels)]
    top_p_host, top_i_host, p_true_host, labels_host = (t.tolist() for t in host)
    return {
        "video": [v.name for v in videos],
        "user": [v.user for v in videos],
        "true_class": [classes[i] for i in labels_host],
        "pred_class": [classes[row[0]] for row in top_i_host],
        "p_true": p_true_host,
        "top_classes": [[classes[i] for i in row] for row in top_i_host],
        "top_probs": top_p_host,
    }
