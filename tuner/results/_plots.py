"""Figures of an experiment's results, drawn with matplotlib's non-interactive Agg backend.

:func:`plot_curves`, :func:`plot_importances` and :func:`plot_parallel` take an experiment (or its
importances) and choose what to show; the ``draw_*`` functions draw given frames:

- :func:`draw_curves`: training and validation accuracy and loss by epoch, one row per trial, with
  the learning-rate phases shaded and their boundaries marked by gray lines (the report's Fig. 12)
  and stage boundaries drawn as labelled black lines; the epochs a trial shares with the trial
  that computed them (prefix sharing) are labelled, and a population search's exploits drawn as
  the lineage: a purple line where the trial took another trial's state, with that trial's
  validation curve before it;
- :func:`draw_importances`: a horizontal bar per hyperparameter;
- :func:`draw_pareto`: accuracy against cost, the Pareto front drawn as a staircase;
- :func:`draw_parallel` and :func:`parallel_html`: parallel coordinates, one line per trial colored
  by its value, as a PNG or as a self-contained HTML page with an inline SVG.
"""

from __future__ import annotations

import html
import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, work without a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import Normalize, to_hex
from matplotlib.ticker import MaxNLocator

from tuner.results._load import (
    Experiment,
    hashable,
    hyperparameter_columns,
    require_columns,
    varying_columns,
)
from tuner.results._tables import format_number

__all__ = [
    "ParallelAxis",
    "draw_curves",
    "draw_importances",
    "draw_parallel",
    "draw_pareto",
    "lr_phases",
    "parallel_axes",
    "parallel_html",
    "plot_curves",
    "plot_importances",
    "plot_parallel",
]

_TRAIN, _VAL, _LINEAGE = "tab:blue", "tab:orange", "tab:purple"
_DPI = 150


def lr_phases(run: pd.DataFrame) -> list[tuple[int, int, float]]:
    """Runs of consecutive epochs at one learning rate: ``(first_epoch, last_epoch, lr)``.

    ``run`` holds one trial's epoch rows sorted by ``epoch``; rows without ``lr`` are skipped.
    """
    phases: list[tuple[int, int, float]] = []
    for epoch, lr in zip(run["epoch"], run["lr"], strict=True):
        if pd.isna(lr):
            continue
        if phases and math.isclose(phases[-1][2], lr, rel_tol=1e-9):
            phases[-1] = (phases[-1][0], int(epoch), phases[-1][2])
        else:
            phases.append((int(epoch), int(epoch), float(lr)))
    return phases


def draw_curves(
    epochs: pd.DataFrame,
    trial_ids: Sequence[str],
    out: str | os.PathLike[str],
    *,
    titles: Mapping[str, str] | None = None,
    exploits: pd.DataFrame | None = None,
) -> Path:
    """Accuracy and loss curves of ``trial_ids`` (a row of two panels each) saved to ``out``;
    ``exploits`` (a population search's table) adds each trial's lineage."""
    if not trial_ids:
        raise ValueError("trial_ids: name at least one trial")
    fig = plt.figure(figsize=(11, 3.6 * len(trial_ids)), layout="constrained")
    rows = fig.subfigures(len(trial_ids), 1, squeeze=False)[:, 0]
    lrs = epochs["lr"].dropna()
    norm = _lr_norm(lrs) if not lrs.empty else None
    for row, trial_id in zip(rows, trial_ids, strict=True):
        run = epochs[epochs["trial_id"] == trial_id].sort_values("epoch")
        if run.empty:
            raise ValueError(f"trial {trial_id}: no epochs recorded")
        # One title per trial across both panels, wrapped: a long list of hyperparameters
        # would otherwise run into the neighbouring panel's title and be cut at the edge.
        title = (titles or {}).get(trial_id, trial_id)
        row.suptitle(textwrap.fill(title, width=110), fontsize=10)
        acc_ax, loss_ax = row.subplots(1, 2)
        for ax, metric, label in ((acc_ax, "acc", "Accuracy (%)"), (loss_ax, "loss", "Loss")):
            _draw_metric(ax, run, metric, label)
            _mark_phases(ax, run, norm)
            _mark_stages(ax, run)
            _mark_shared(ax, run)
            if exploits is not None and not exploits.empty:
                _mark_lineage(ax, epochs, exploits[exploits["trial_id"] == trial_id], metric)
            ax.set_title(label.split(" ")[0].lower(), fontsize=9)
            ax.legend(fontsize=7, loc="best", framealpha=0.8)
    return save_figure(fig, out)


def _draw_metric(ax: Axes, run: pd.DataFrame, metric: str, label: str) -> None:
    marker = "o" if len(run) <= 40 else None
    for split, color in (("train", _TRAIN), ("val", _VAL)):
        column = f"{split}_{metric}"
        name = "training" if split == "train" else "validation"
        ax.plot(run["epoch"], run[column], color=color, marker=marker, ms=3, lw=1.4, label=name)
    ax.set_xlabel("Epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(label)
    ax.grid(alpha=0.25)


def _lr_norm(lrs: pd.Series) -> Normalize:
    low, high = float(np.log10(lrs.min())), float(np.log10(lrs.max()))
    return Normalize(low - 0.5, high + 0.5)


def _mark_phases(ax: Axes, run: pd.DataFrame, norm: Normalize | None) -> None:
    """Shade each learning-rate phase by its rate and draw a gray line where the rate changes."""

    cmap = plt.get_cmap("Greens")
    labelled: set[float] = set()
    for index, (first, last, lr) in enumerate(lr_phases(run)):
        shade = cmap(0.25 + 0.6 * norm(math.log10(lr))) if norm is not None and lr > 0 else "0.9"
        label = f"lr {format_number(lr)}" if lr not in labelled else None
        labelled.add(lr)
        ax.axvspan(first - 0.5, last + 0.5, color=shade, alpha=0.3, lw=0, label=label)
        if index:
            ax.axvline(first - 0.5, color="0.5", lw=1.0, ls="--")


def _mark_stages(ax: Axes, run: pd.DataFrame) -> None:
    """A black line and a label where a new training stage starts."""
    stages = run[["epoch", "stage"]].dropna()
    starts = stages[stages["stage"].ne(stages["stage"].shift())]
    for epoch, stage in zip(starts["epoch"], starts["stage"], strict=True):
        if epoch != stages["epoch"].iloc[0]:
            ax.axvline(epoch - 0.5, color="black", lw=1.4)
        ax.annotate(
            f"stage {int(stage)}",
            xy=(epoch - 0.5, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
            fontsize=8,
        )


def _mark_shared(ax: Axes, run: pd.DataFrame) -> None:
    """Label the first epochs when another trial computed them (prefix sharing)."""
    if "computed_by" not in run.columns:
        return
    shared = run[run["computed_by"].notna() & (run["computed_by"] != run["trial_id"])]
    if shared.empty:
        return
    last = int(shared["epoch"].max())
    sources = ", ".join(dict.fromkeys(shared["computed_by"].astype(str)))
    ax.axvline(last + 0.5, color="0.3", lw=1.0, ls=":")
    ax.annotate(
        f"epochs 1-{last} computed once, by {sources}",
        xy=(last + 0.5, 0.0),
        xycoords=("data", "axes fraction"),
        xytext=(-3, 4),
        textcoords="offset points",
        ha="right",
        fontsize=7,
        color="0.3",
    )


def _mark_lineage(ax: Axes, epochs: pd.DataFrame, exploits: pd.DataFrame, metric: str) -> None:
    """Each exploit: a line after its epoch, and the donor's validation curve over the epochs
    since the previous one (the history of the weights the trial continued with)."""
    start = 1
    for number, row in enumerate(exploits.sort_values("epoch").itertuples()):
        epoch = int(row.epoch)
        donor = epochs[(epochs["trial_id"] == row.donor_id) & epochs["epoch"].between(start, epoch)]
        label = "donor's validation (lineage)" if number == 0 else None
        ax.plot(donor["epoch"], donor[f"val_{metric}"], color=_LINEAGE, ls=":", lw=1.3, label=label)
        ax.axvline(epoch + 0.5, color=_LINEAGE, lw=1.0)
        ax.annotate(
            f"from {row.donor_id}",
            xy=(epoch + 0.5, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -24),
            textcoords="offset points",
            fontsize=7,
            color=_LINEAGE,
        )
        start = epoch + 1


def draw_importances(
    importances: pd.Series, out: str | os.PathLike[str], *, title: str = ""
) -> Path:
    """Horizontal bars of ``importances`` (name -> share), the most important on top."""
    ordered = importances.sort_values()
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(ordered) + 1.4), layout="constrained")
    bars = ax.barh([str(i) for i in ordered.index], ordered.to_numpy(), color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in ordered], padding=3, fontsize=8)
    ax.set_xlabel("Importance (share of the total)")
    ax.set_ylabel("Hyperparameter")
    ax.set_xlim(0, max(1.0, float(ordered.max()) * 1.15))
    ax.legend([bars], ["importance"], fontsize=8, loc="lower right")
    ax.set_title(textwrap.fill(title, width=70), fontsize=10)  # long experiment names wrap
    ax.grid(axis="x", alpha=0.25)
    return save_figure(fig, out)


@dataclass(frozen=True)
class ParallelAxis:
    """One vertical axis of a parallel-coordinates plot."""

    name: str
    positions: np.ndarray
    """(N,) position of each trial on the axis, 0 (bottom) to 1 (top)."""
    ticks: list[tuple[float, str]]
    """(position, label) pairs."""


def parallel_axes(trials: pd.DataFrame, columns: Sequence[str], value: str) -> list[ParallelAxis]:
    """Axes for ``columns`` then ``value``: numbers scaled (log when they span two decades and are
    positive), anything else (text, lists, missing values) as evenly spaced categories."""

    axes = []
    for name in [*columns, value]:
        column = trials[name]
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        if numeric and not column.isna().any():
            axes.append(_numeric_axis(name, column.astype(float), format_number))
        else:
            labels = column.map(lambda v: format_number(v) if v is not None else "-")
            categories = sorted(set(labels))
            step = 1.0 / max(len(categories) - 1, 1)
            where = {
                c: (i * step if len(categories) > 1 else 0.5) for i, c in enumerate(categories)
            }
            positions = labels.map(where).to_numpy(dtype=float)
            axes.append(ParallelAxis(name, positions, [(where[c], c) for c in categories]))
    return axes


def _numeric_axis(name: str, column: pd.Series, fmt: Any) -> ParallelAxis:
    low, high = float(column.min()), float(column.max())
    log = low > 0 and high / low >= 100
    scale = np.log10 if log else (lambda x: np.asarray(x, dtype=float))
    lo, hi = float(scale(low)), float(scale(high))
    span = hi - lo or 1.0
    positions = (scale(column.to_numpy()) - lo) / span if hi > lo else np.full(len(column), 0.5)
    values = sorted(set(column)) if column.nunique() <= 6 else list(np.linspace(low, high, 5))
    if log and column.nunique() > 6:
        values = list(np.logspace(lo, hi, 5))
    ticks = [((float(scale(v)) - lo) / span if hi > lo else 0.5, fmt(float(v))) for v in values]
    return ParallelAxis(name, np.asarray(positions, dtype=float), ticks)


def draw_parallel(
    trials: pd.DataFrame, columns: Sequence[str], value: str, out: str | os.PathLike[str]
) -> Path:
    """Parallel coordinates of ``trials`` over ``columns``, lines colored by ``value``."""
    axes = parallel_axes(trials, columns, value)
    values = trials[value].to_numpy(dtype=float)
    norm, cmap = Normalize(np.nanmin(values), np.nanmax(values)), plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(1.6 * len(axes) + 2.5, 4.8), layout="constrained")
    xs = np.arange(len(axes))
    ys = np.stack([a.positions for a in axes], axis=1)  # (N trials, axes)
    for row, v in sorted(zip(ys, values, strict=True), key=lambda pair: pair[1]):
        ax.plot(xs, row, color=cmap(norm(v)), lw=1.3, alpha=0.85)
    for x, axis in zip(xs, axes, strict=True):
        ax.axvline(float(x), color="0.3", lw=0.8)
        for position, label in axis.ticks:
            ax.annotate(label, (x, position), xytext=(4, 0), textcoords="offset points", fontsize=7)
    ax.set_xticks(xs, [a.name for a in axes])
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlim(-0.2, len(axes) - 0.4)
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.01)
    bar.set_label(f"{value} (%)" if value.endswith("acc") else value)
    ax.set_title(f"Parallel coordinates of {len(values)} trials", fontsize=10)
    return save_figure(fig, out)


def parallel_html(
    trials: pd.DataFrame,
    columns: Sequence[str],
    value: str,
    out: str | os.PathLike[str],
    *,
    title: str = "Parallel coordinates",
) -> Path:
    """A self-contained HTML page: an inline SVG of the parallel coordinates and the trial table.

    It loads nothing from the network; hovering a line shows the trial id and its value.
    """
    axes = parallel_axes(trials, columns, value)
    values = trials[value].to_numpy(dtype=float)
    norm, cmap = Normalize(np.nanmin(values), np.nanmax(values)), plt.get_cmap("viridis")
    width, height, left, top = 170 * len(axes) + 80, 380, 50, 40
    step = (width - 2 * left) / max(len(axes) - 1, 1)
    xs = [left + i * step for i in range(len(axes))]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 80}">']
    order = np.argsort(values)
    for i in order:
        points = " ".join(
            f"{x:.1f},{top + (1 - a.positions[i]) * height:.1f}"
            for x, a in zip(xs, axes, strict=True)
        )
        tip = html.escape(f"{trials['trial_id'].iloc[i]}: {value} {values[i]:.2f}")
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{to_hex(cmap(norm(values[i])))}" '
            f'stroke-width="1.6" opacity="0.85"><title>{tip}</title></polyline>'
        )
    for x, axis in zip(xs, axes, strict=True):
        parts.append(f'<line x1="{x}" y1="{top}" x2="{x}" y2="{top + height}" stroke="#444"/>')
        parts.append(
            f'<text x="{x}" y="{top + height + 24}" text-anchor="middle" font-weight="bold">'
            f"{html.escape(axis.name)}</text>"
        )
        for position, label in axis.ticks:
            y = top + (1 - position) * height
            parts.append(f'<text x="{x + 5}" y="{y + 4:.1f}">{html.escape(label)}</text>')
    parts.append("</svg>")
    table = trials[["trial_id", *columns, value]].to_html(index=False, na_rep="-", border=0)
    page = (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;font-size:12px} td,th{padding:2px 8px}</style>"
        f"</head><body><h2>{html.escape(title)}</h2><p>Line color: {html.escape(value)}, "
        f"from {np.nanmin(values):.2f} (dark) to {np.nanmax(values):.2f} (yellow).</p>"
        f"{''.join(parts)}{table}</body></html>\n"
    )
    path = Path(out).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


# -- from an experiment ------------------------------------------------------------------------


def plot_curves(
    experiment: Experiment, trial_ids: Sequence[str], out: str | os.PathLike[str]
) -> Path:
    """PNG of accuracy and loss by epoch for ``trial_ids``, LR phases and stages marked."""
    names = hyperparameter_columns(experiment.trials)
    shown = varying_columns(experiment.trials, names)
    rows = experiment.trials.set_index("trial_id")
    titles = {
        t: ", ".join([t, *(f"{c}={format_number(rows.at[t, c])}" for c in shown)])
        for t in trial_ids
        if t in rows.index
    }
    return draw_curves(
        experiment.epochs, trial_ids, out, titles=titles, exploits=experiment.exploits
    )


def plot_importances(
    importances: pd.Series, out: str | os.PathLike[str], *, title: str = ""
) -> Path:
    """PNG bar plot of :func:`param_importances`."""
    return draw_importances(importances, out, title=title)


def plot_parallel(
    experiment: Experiment,
    out: str | os.PathLike[str],
    value: str = "best_val_acc",
    columns: Sequence[str] | None = None,
) -> Path:
    """Parallel coordinates of the trials with a ``value``: ``.html`` (inline SVG) or PNG.

    ``columns`` defaults to the hyperparameters that vary.
    """
    trials = experiment.trials.dropna(subset=[value]).reset_index(drop=True)
    if trials.empty:
        raise ValueError(f"{experiment.name}: no trial with {value} yet")
    columns = list(columns) if columns is not None else varying_columns(trials)
    require_columns(trials, columns, "params")
    trials = hashable(trials, columns)
    if Path(out).suffix.lower() in (".html", ".htm"):
        return parallel_html(trials, columns, value, out, title=f"{experiment.name}: {value}")
    return draw_parallel(trials, columns, value, out)


def save_figure(fig: Any, out: str | os.PathLike[str]) -> Path:
    """Write ``fig`` to ``out`` (folders made as needed) and close it."""
    path = Path(out).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=_DPI)
    finally:
        plt.close(fig)
    return path


def draw_pareto(
    frame: pd.DataFrame,
    out: str | os.PathLike[str],
    *,
    cost: str,
    cost_label: str,
    value: str = "best_val_acc",
    title: str = "",
    marked: Mapping[str, str] | None = None,
) -> Path:
    """Accuracy against cost, one point per trial of ``frame`` (columns ``trial_id``, ``cost``,
    ``value``, ``on_front``, as :func:`tuner.results.pareto_front` returns them): the front as
    a staircase, the other trials gray, the cost on a log axis when it spans a decade.
    ``marked``: trial id -> label written beside its point (the best, the recommendation);
    trials stopped early (``early_stopped``) are drawn hollow."""
    shown = frame.dropna(subset=["cost", value])
    if shown.empty:
        raise ValueError("no trial has both a cost and a value")
    from tuner.results._cost import cost_unit

    scale, unit = cost_unit(cost, float(shown["cost"].max()))
    shown = shown.assign(x=shown["cost"] / scale)
    stopped = shown.get("early_stopped", pd.Series(False, index=shown.index))
    stopped = stopped.fillna(False).astype(bool)
    fig, ax = plt.subplots(figsize=(7.0, 4.6), layout="constrained")
    front = shown[shown["on_front"]].sort_values("x")
    ax.step(front["x"], front[value], where="post", color=_VAL, lw=1.2, zorder=3)
    styles: tuple[tuple[pd.DataFrame, dict[str, Any]], ...] = (
        (shown[~shown["on_front"] & ~stopped], {"color": "0.6", "label": "dominated trial"}),
        (shown[shown["on_front"] & ~stopped], {"color": _VAL, "label": "on the front"}),
        (
            shown[stopped],
            {"facecolors": "none", "edgecolors": "0.3", "label": "stopped early by the scheduler"},
        ),
    )
    for subset, style in styles:
        if not subset.empty:
            ax.scatter(subset["x"], subset[value], s=30, zorder=4, **style)
    for trial_id, label in (marked or {}).items():
        row = shown[shown["trial_id"] == trial_id]
        if not row.empty:
            x, y = float(row["x"].iloc[0]), float(row[value].iloc[0])
            ax.annotate(label, (x, y), xytext=(6, -12), textcoords="offset points", fontsize=8)
    low, high = float(shown["x"].min()), float(shown["x"].max())
    if low > 0 and high / low >= 10:
        ax.set_xscale("log")
    ax.set_xlabel(f"{cost_label} ({unit})")
    ax.set_ylabel(value.replace("_", " ") + (" (%)" if value.endswith("_acc") else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, out)


def plot_pareto(
    experiment: Experiment,
    out: str | os.PathLike[str],
    cost: str = "flops",
    marked: Mapping[str, str] | None = None,
) -> Path:
    """PNG of :func:`tuner.results.pareto_front`: best validation accuracy against ``cost``."""
    from tuner.results._cost import cost_label, pareto_front

    frame = pareto_front(experiment, cost)
    try:
        return draw_pareto(
            frame,
            out,
            cost=cost,
            cost_label=cost_label(cost),
            title=f"{experiment.name}: accuracy against {cost_label(cost)}",
            marked=marked,
        )
    except ValueError as exc:
        raise ValueError(f"{experiment.name}: {exc} ({cost})") from None
