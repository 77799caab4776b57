"""Motion-segmentation head and loss (SparNet's self-supervised branch).

Planamente, Bottino & Caputo, "Joint Encoding of Appearance and Motion Features with
Self-supervision for First Person Action Recognition" (ICPR 2020): from a backbone tap, a shallow
head predicts for every cell of an l x l grid whether it moves (the IDT motion maps, "mmaps").
Head, as the report's MS blocks: 1x1 convolution to 100 channels, ReLU, Dropout, flatten,
Linear(100 l^2, K l^2); K = 2 logits per cell for classification, K = 1 value per cell for
regression on grey (cell-mean) targets. The report's code drops out 0.5 on the conv5 head and 0.2
on its larger conv4 / conv3 heads (:func:`report_ms_dropout`).

The report's "fully connected layer followed by a softmax" is a softmax over the two classes of
each cell, which the cross-entropy applies: the loss is per cell, with the class on dim 1 of
(B*T, 2, l, l), and no softmax across cells (the report's code normalises across the cells, a
bug listed in docs/models.md). Regression uses MSE. ``norm="frame_sum"`` is the report's
normalisation (sum over cells / (B*T)), which its alpha values were tuned with; ``norm="pixel"``
averages over every cell of every frame, l^2 times smaller.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MS_TASKS", "MotionSegmentationHead", "ms_loss", "report_ms_dropout"]

MS_TASKS = ("classification", "regression")
_NORMS = ("pixel", "frame_sum")
_REPORT_DROPOUT = {"conv5": 0.5, "conv4": 0.2, "conv3": 0.2}


def report_ms_dropout(tap: str) -> float:
    """Dropout of the report's MS head on ``tap``: 0.5 on conv5 (``MSBlock``, ``MS_block2``,
    ``MS_regressor``), 0.2 on conv4 / conv3 (``bigger_ms_block``)."""
    if tap not in _REPORT_DROPOUT:
        raise ValueError(f"ms_layer: must be one of {', '.join(_REPORT_DROPOUT)}; got {tap!r}")
    return _REPORT_DROPOUT[tap]


def check_ms_task(task: str) -> None:
    """Raise ``ValueError`` naming ``ms_task`` unless ``task`` is one of ``MS_TASKS``."""
    if task not in MS_TASKS:
        raise ValueError(f"ms_task: must be one of {', '.join(MS_TASKS)}; got {task!r}")


class MotionSegmentationHead(nn.Module):
    """Per-frame motion-map predictor on a (C, l, l) feature map."""

    def __init__(
        self,
        in_channels: int,
        map_size: int,
        task: str = "classification",
        hidden: int = 100,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        check_ms_task(task)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ms_dropout: must be in [0, 1), got {dropout!r}")
        self.task, self.map_size = task, map_size
        self.outputs = 2 if task == "classification" else 1
        self.reduce = nn.Conv2d(in_channels, hidden, kernel_size=1)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden * map_size * map_size, self.outputs * map_size * map_size)

    def forward(self, features: Tensor) -> Tensor:
        """Features (N, C, l, l) -> logits (N, 2, l, l) for classification, values (N, l, l) for
        regression."""
        N, _, H, W = features.shape
        if self.map_size not in (H, W) or H != W:
            raise ValueError(f"ms head: expected {self.map_size}x{self.map_size} maps, got {H}x{W}")
        flat = self.relu(self.reduce(features)).flatten(1)  # (N, hidden*l*l)
        out = self.fc(self.dropout(flat))  # (N, K*l*l)
        if self.task == "classification":
            return out.view(N, 2, H, W)  # class dim first, as cross_entropy expects
        return out.view(N, H, W)


def ms_loss(
    pred: Tensor, target: Tensor, task: str = "classification", norm: str = "frame_sum"
) -> Tensor:
    """Motion-segmentation loss of a batch of clips.

    Args:
        pred: the model's ``"ms"`` output, (B, T, 2, l, l) logits or (B, T, l, l) values.
        target: motion maps (B, T, l, l), float in [0, 1]; classification thresholds at 0.5.
        task: ``classification`` (cross-entropy) or ``regression`` (MSE on the raw values).
        norm: ``frame_sum`` (sum / (B*T), the report) or ``pixel`` (mean over all B*T*l*l cells).

    Returns:
        The scalar loss.
    """
    check_ms_task(task)
    if norm not in _NORMS:
        raise ValueError(f"norm: must be one of {', '.join(_NORMS)}; got {norm!r}")
    B, T, H, W = target.shape
    expected = (B, T, 2, H, W) if task == "classification" else (B, T, H, W)
    if tuple(pred.shape) != expected:
        raise ValueError(f"ms_loss: pred {tuple(pred.shape)} does not match {expected} ({task})")
    if task == "classification":
        labels = (target >= 0.5).long().flatten(0, 1)  # (B*T, l, l)
        total = F.cross_entropy(pred.flatten(0, 1), labels, reduction="sum")  # (B*T, 2, l, l)
    else:
        total = F.mse_loss(pred, target.to(pred.dtype), reduction="sum")
    cells = B * T * H * W if norm == "pixel" else B * T
    return total / cells
