"""Figures that read a trial's predictions: the confusion matrix, and the pivot heatmap with the
cells not distinguishable from the best marked. Drawn with matplotlib's Agg backend."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, work without a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from tuner.results._load import Experiment
from tuner.results._plots import save_figure
from tuner.results._stats import LEVEL, confusion, pivot_marks
from tuner.results._tables import format_number, pivot_table

__all__ = ["plot_confusion", "plot_pivot"]

_DPI = 150


def plot_confusion(
    experiment: Experiment, trial_id: str, out: str | os.PathLike[str], epoch: int | str = "best"
) -> dict[str, Any]:
    """PNG of the confusion matrix (counts, true class by row) with each class's accuracy beside
    its row; returns :func:`tuner.results.confusion`'s result."""
    found = confusion(experiment, trial_id, epoch)
    matrix: pd.DataFrame = found["matrix"]
    classes = found["classes"]
    side = max(6.0, 0.22 * len(classes) + 3.0)
    fig, ax = plt.subplots(figsize=(side + 1.5, side), constrained_layout=True)
    image = ax.imshow(matrix.to_numpy(), cmap="Blues", interpolation="nearest")
    ticks = np.arange(len(classes))
    size = 8 if len(classes) <= 20 else 5
    ax.set_xticks(ticks, labels=classes, rotation=90, fontsize=size)
    per_class = found["per_class"]["acc"]
    labels = [f"{name} ({per_class.get(name, float('nan')):.0f} %)" for name in classes]
    ax.set_yticks(ticks, labels=labels, fontsize=size)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (per-class accuracy)")
    if len(classes) <= 20:
        counts = matrix.to_numpy()
        for (row, col), count in np.ndenumerate(counts):
            if count:
                dark = count > counts.max() / 2
                ax.text(col, row, str(count), ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")  # fmt: skip
    ax.set_title(
        f"{experiment.name}: trial {trial_id}, epoch {found['epoch']}\n"
        f"accuracy {found['acc']:.1f} % on {found['videos']} videos",
        fontsize=10,
    )
    fig.colorbar(image, ax=ax, shrink=0.6, label="videos")
    save_figure(fig, out)
    return found


def plot_pivot(
    experiment: Experiment,
    rows: Sequence[str],
    cols: Sequence[str],
    out: str | os.PathLike[str],
    *,
    value: str = "best_val_acc",
    agg: str = "mean",
    significance: bool = False,
    level: float = LEVEL,
) -> Path:
    """PNG heatmap of :func:`tuner.results.pivot_table`; with ``significance``, cells whose trials
    are not distinguishable from the best trial (:func:`tuner.results.pivot_marks`) are outlined
    and marked with ``=``."""
    table = pivot_table(experiment.trials, rows, cols, value, agg)
    marks = pivot_marks(experiment, rows, cols, value=value, level=level) if significance else None
    values = table.to_numpy(dtype=float)
    height = max(3.0, 0.45 * len(table.index) + 1.8)
    width = max(5.0, 1.2 * len(table.columns) + 3.5)
    fig, ax = plt.subplots(figsize=(width, height), constrained_layout=True)
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_xticks(np.arange(len(table.columns)), labels=[_label(c) for c in table.columns])
    ax.set_yticks(np.arange(len(table.index)), labels=[_label(i) for i in table.index])
    ax.set_xlabel(", ".join(cols) if cols else value)
    ax.set_ylabel(", ".join(rows))
    finite = values[np.isfinite(values)]
    middle = float(np.median(finite)) if finite.size else 0.0
    for (row, col), cell in np.ndenumerate(values):
        if not np.isfinite(cell):
            continue
        tied = marks is not None and _mark(marks, table.index[row], table.columns[col])
        text = f"{cell:.1f}" + (" =" if tied else "")
        ax.text(col, row, text, ha="center", va="center", fontsize=8,
                color="black" if cell >= middle else "white")  # fmt: skip
        if tied:
            ax.add_patch(
                plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", lw=2)
            )
    title = f"{experiment.name}: {agg} {value}"
    if marks is not None:
        title += f"\n= (red): not distinguishable from the best trial (Holm, {1 - level:g})"
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label=value)
    return save_figure(fig, out)


def _mark(marks: pd.DataFrame, row: Any, col: Any) -> bool:
    try:
        return bool(marks.loc[row, col])
    except KeyError:
        return False


def _label(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(format_number(v) for v in value)
    return format_number(value)
