"""What the pages show, as JSON-ready dicts computed by ``tuner.results`` from an experiment.

The numbers are those of ``egotune results``: the trial table reads ``trials.parquet`` as loaded
by :func:`tuner.results.load_experiment`, the heatmap is :func:`tuner.results.pivot_table`, the
importances :func:`tuner.results.param_importances`, the curves' learning-rate phases and the
parallel axes those of the figures. Values are formatted as the command line prints them
(:func:`tuner.results.format_number`, two decimals for accuracies); NaN becomes ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from tuner import results
from tuner.spaces import parse_space
from tuner.ui._statistics import NOT_AVAILABLE, Statistics

__all__ = [
    "VALUE",
    "comparison",
    "curves",
    "default_curve_trials",
    "default_pivot_layout",
    "experiment_page",
    "experiment_row",
    "importance",
    "parallel",
    "pareto",
    "pivot",
    "plain",
    "timing",
    "trial_detail",
    "trial_table",
    "varying_in_space_order",
]

VALUE = "best_val_acc"
TIMING = {
    "data_wait_s": "waiting for data",
    "train_s": "training",
    "val_s": "validation",
    "checkpoint_s": "checkpoint",
    "report_s": "report to Tune",
}
"""The epochs table's timing columns, as the timing chart stacks them."""
_ACTIVE = ("RUNNING", "PENDING", "PAUSED")
METADATA_SOURCE = "experiment.json: space.text"


def plain(value: Any) -> Any:
    """``value`` as a JSON-ready Python value: numpy scalars unwrapped, NaN and NA as ``None``."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _two(value: Any) -> str:
    value = plain(value)
    return "-" if value is None else f"{value:.2f}"


# -- the experiment list --------------------------------------------------------------------


def experiment_row(experiment: results.Experiment, updated: float) -> dict[str, Any]:
    """One row of the experiment list: :func:`tuner.results.summarize_experiment` and dates."""
    summary = results.summarize_experiment(experiment)
    states = summary["status"]
    active = sum(states.get(s, 0) for s in _ACTIVE)
    return {
        "name": experiment.name,
        "space": summary["space"],
        "trials": summary["trials"],
        "states": states,
        "state": "running" if active else ("ended" if summary["trials"] else "no trials yet"),
        "best": summary["best"],
        "best_text": _two(summary["best"]),
        "best_trial": summary["best_trial"],
        "started_at": experiment.metadata.get("started_at"),
        "updated_at": pd.Timestamp(updated, unit="s", tz="UTC").isoformat(timespec="seconds"),
    }


# -- the experiment page --------------------------------------------------------------------


def experiment_page(experiment: results.Experiment, statistics: Statistics) -> dict[str, Any]:
    """The live part of the experiment page: summary, trial table and the charts' defaults."""
    summary = results.summarize_experiment(experiment)
    rows, cols = default_pivot_layout(experiment)
    return {
        "summary": {**summary, "best_text": _two(summary["best"])},
        "started_at": experiment.metadata.get("started_at"),
        "table": trial_table(experiment, statistics),
        "default_curves": default_curve_trials(experiment),
        "pivot_layout": {"rows": rows, "cols": cols},
    }


def trial_table(experiment: results.Experiment, statistics: Statistics) -> dict[str, Any]:
    """The trials with their varying hyperparameters, state, epoch, best and where they stopped."""
    trials = experiment.trials
    params = results.varying_columns(trials) if len(trials) > 1 else []
    params = varying_in_space_order(experiment, params)
    intervals = statistics.intervals(experiment)
    rows = []
    for row in trials.to_dict("records"):
        trial_id = row["trial_id"]
        interval = None
        if intervals is not None and trial_id in intervals.index:
            interval = [plain(intervals.at[trial_id, "low"]), plain(intervals.at[trial_id, "high"])]
        rows.append(
            {
                "trial_id": trial_id,
                "status": row["status"],
                "params": [plain(row[c]) for c in params],
                "params_text": [results.format_number(row[c]) for c in params],
                "epoch": plain(row["epochs_run"]),
                "best": plain(row[VALUE]),
                "best_text": _two(row[VALUE]),
                "best_epoch": plain(row["best_epoch"]),
                "interval": interval,
                "stopped": _stopped(row),
                "wall_s": plain(row["wall_seconds"]),
                "failures": plain(row["num_failures"]),
            }
        )
    return {
        "params": params,
        "rows": rows,
        "intervals": intervals is not None,
        "intervals_note": None if intervals is not None else f"95 % intervals {NOT_AVAILABLE}",
    }


def _stopped(row: dict[str, Any]) -> str:
    """Where the scheduler stopped the trial: ``epoch N``, ``ran all`` or empty while it runs."""
    stopped = plain(row["early_stopped"])
    if stopped is None:
        return ""
    return f"epoch {plain(row['epochs_run'])}" if stopped else "ran all"


def default_curve_trials(experiment: results.Experiment, k: int = 3) -> list[str]:
    """The ``k`` best trials, or while none has a best yet the first ones with epochs."""
    try:
        return results.select_trials(experiment, top=k)
    except ValueError:
        return list(dict.fromkeys(experiment.epochs["trial_id"]))[:k]


def curves(experiment: results.Experiment, trial_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Per trial: accuracy and loss by epoch, learning-rate phases and stage starts."""
    from tuner.results import lr_phases  # matplotlib loads with it: only when drawn

    epochs = experiment.epochs
    shown = results.varying_columns(experiment.trials) if len(experiment.trials) > 1 else []
    configs = experiment.trials.set_index("trial_id")
    drawn = []
    for trial_id in trial_ids:
        run = epochs[epochs["trial_id"] == trial_id].sort_values("epoch")
        if run.empty:
            continue
        title = [trial_id]
        if trial_id in configs.index:
            title += [f"{c}={results.format_number(configs.at[trial_id, c])}" for c in shown]
        stages = run[["epoch", "stage"]].dropna()
        starts = stages[stages["stage"].ne(stages["stage"].shift())]
        drawn.append(
            {
                "trial_id": trial_id,
                "title": ", ".join(title),
                **{c: _column(run, c) for c in ("epoch", "train_acc", "val_acc", "lr")},
                **{c: _column(run, c) for c in ("train_loss", "val_loss", "stage")},
                "phases": [
                    [first, last, lr, results.format_number(lr)]
                    for first, last, lr in lr_phases(run)
                ],
                "stages": [
                    [plain(e), plain(s)]
                    for e, s in zip(starts["epoch"], starts["stage"], strict=True)
                ],
            }
        )
    return drawn


def _column(frame: pd.DataFrame, name: str) -> list[Any]:
    return [plain(v) for v in frame[name]]


def default_pivot_layout(experiment: results.Experiment) -> tuple[list[str], list[str]]:
    """Rows and columns of the first heatmap: the varying hyperparameters but the seed in the
    space's order, the last one across (gamma in the report's Fig. 10), the others down."""
    finished = experiment.trials.dropna(subset=[VALUE])
    varying = results.varying_columns(finished) if len(finished) > 1 else []
    keys = [c for c in varying_in_space_order(experiment, varying) if c != "seed"]
    return (keys[:-1], keys[-1:]) if len(keys) > 1 else (keys, [])


def varying_in_space_order(experiment: results.Experiment, columns: Sequence[str]) -> list[str]:
    """``columns`` in the order the search space names them (``experiment.json``), then the rest."""
    order = {key: i for i, key in enumerate(_space_keys(experiment.metadata))}
    return sorted(columns, key=lambda c: order.get(c, len(order)))


def _space_keys(metadata: dict[str, Any]) -> list[str]:
    text = (metadata.get("space") or {}).get("text")
    if not isinstance(text, str):
        return []
    try:
        return parse_space(yaml.safe_load(text), source=METADATA_SOURCE).varying_keys
    except (ValueError, yaml.YAMLError):
        return []


def pivot(
    experiment: results.Experiment,
    rows: Sequence[str],
    cols: Sequence[str],
    agg: str,
    statistics: Statistics,
) -> dict[str, Any]:
    """:func:`tuner.results.pivot_table` of ``best_val_acc`` with labels and cells as text."""
    table = results.pivot_table(experiment.trials, rows, cols, VALUE, agg)
    marks = statistics.pivot_marks(experiment, rows, cols, agg)
    if marks is not None:
        marks = marks.reindex(index=table.index, columns=table.columns)
    values = [[plain(v) for v in line] for line in table.to_numpy()]
    present = [v for line in values for v in line if v is not None]
    return {
        "rows": list(rows),
        "cols": list(cols),
        "agg": agg,
        "row_labels": [_labels(key) for key in table.index],
        "col_labels": [_labels(key) for key in table.columns] if cols else [[f"{agg} {VALUE}"]],
        "values": values,
        "text": [[_two(v) for v in line] for line in values],
        "best": max(present) if present else None,
        "marks": None if marks is None else marks.fillna(False).astype(bool).to_numpy().tolist(),
        "marks_note": None if marks is not None else f"significance marks {NOT_AVAILABLE}",
    }


def _labels(key: Any) -> list[str]:
    return [results.format_number(part) for part in (key if isinstance(key, tuple) else (key,))]


def importance(experiment: results.Experiment) -> dict[str, Any]:
    """:func:`tuner.results.param_importances` (ped-anova), or why it cannot be computed yet."""
    try:
        shares = results.param_importances(experiment.trials, VALUE)
    except ValueError as exc:
        return {"names": [], "values": [], "message": str(exc)}
    return {"names": list(shares.index), "values": [plain(v) for v in shares], "message": None}


def parallel(experiment: results.Experiment) -> dict[str, Any]:
    """The axes of ``egotune results parallel``: positions 0..1 with their tick labels."""
    from tuner.results import parallel_axes

    trials = experiment.trials.dropna(subset=[VALUE]).reset_index(drop=True)
    columns = results.varying_columns(trials) if len(trials) > 1 else []
    if not columns:
        return {"dimensions": [], "message": "needs two or more trials with a best accuracy"}
    axes = parallel_axes(trials, columns, VALUE)
    return {
        "dimensions": [
            {
                "label": axis.name,
                "values": [plain(v) for v in axis.positions],
                "tickvals": [plain(p) for p, _ in axis.ticks],
                "ticktext": [label for _, label in axis.ticks],
            }
            for axis in axes
        ],
        "color": _column(trials, VALUE),
        "trial_ids": list(trials["trial_id"]),
        "message": None,
    }


def pareto(experiment: results.Experiment, cost: str = "flops") -> dict[str, Any]:
    """:func:`tuner.results.pareto_front` of the trials with a cost, in the unit the command
    line prints, and :func:`tuner.results.recommend` (or why there is none yet)."""
    frame = results.pareto_front(experiment, cost).dropna(subset=["cost", VALUE])
    if frame.empty:
        return {
            "points": [],
            "message": f"no trial has recorded its {results.cost_label(cost)} yet",
        }
    scale, unit = results.cost_unit(cost, float(frame["cost"].max()))
    stopped = frame["early_stopped"].fillna(False).astype(bool)
    points = [
        {
            "trial_id": str(row.trial_id),
            "cost": plain(row.cost / scale),
            "value": plain(getattr(row, VALUE)),
            "on_front": bool(row.on_front),
            "stopped": bool(early),
        }
        for row, early in zip(frame.itertuples(index=False), stopped, strict=True)
    ]
    try:
        found: dict[str, Any] | None = results.recommend(experiment, cost)
        note = None
    except ValueError as exc:
        found, note = None, str(exc)
    recommendation = None
    if found is not None:
        recommendation = {
            "best": found["best"]["trial_id"],
            "recommended": found["recommended"]["trial_id"],
            "same_trial": found["same_trial"],
            "p_holm": plain(found["p_holm"]),
            "saving": plain(found["saving"]),
            "videos": found["videos"],
        }
    return {
        "points": points,
        "unit": f"{results.cost_label(cost)} ({unit})",
        "recommendation": recommendation,
        "recommendation_note": note,
        "message": None,
    }


def timing(experiment: results.Experiment, trial_ids: Sequence[str] = ()) -> dict[str, Any]:
    """Mean seconds per epoch of each timing column (over ``trial_ids``, else every trial)."""
    epochs = experiment.epochs
    if trial_ids:
        epochs = epochs[epochs["trial_id"].isin(trial_ids)]
    present = [c for c in TIMING if c in epochs.columns and epochs[c].notna().any()]
    if not present:
        return {"epochs": [], "parts": [], "message": "no timing columns recorded in these epochs"}
    per_epoch = epochs.groupby("epoch")[[*present, "seconds"]].mean()
    totals = epochs[present].sum()
    startup = epochs["startup_s"].dropna() if "startup_s" in epochs.columns else pd.Series()
    return {
        "epochs": [plain(e) for e in per_epoch.index],
        "parts": [
            {"name": TIMING[c], "column": c, "seconds": _column(per_epoch, c)} for c in present
        ],
        "wall": _column(per_epoch, "seconds"),
        "shares": {TIMING[c]: plain(totals[c] / totals.sum()) for c in present},
        "startup_mean_s": plain(startup.mean()) if len(startup) else None,
        "runs": len(startup),
        "message": None,
    }


# -- the trial and compare pages ------------------------------------------------------------


def trial_detail(
    experiment: results.Experiment, trial_id: str, statistics: Statistics
) -> dict[str, Any] | None:
    """Configuration, summary, log folders and statistics of one trial; ``None`` if unknown."""
    trials = experiment.trials[experiment.trials["trial_id"] == trial_id]
    if trials.empty:
        return None
    row = trials.iloc[0]
    found = statistics.trial(experiment, trial_id)
    return {
        "trial_id": trial_id,
        "config": {
            c: results.format_number(row[c]) for c in results.hyperparameter_columns(trials)
        },
        "summary": {
            "state": row["status"],
            "best validation accuracy": _two(row[VALUE]),
            "best epoch": results.format_number(plain(row["best_epoch"])),
            "epochs run": results.format_number(plain(row["epochs_run"])),
            "stopped by the scheduler at": _stopped(row.to_dict()) or "-",
            "wall time (s)": _two(row["wall_seconds"]),
            "failures": results.format_number(plain(row["num_failures"])),
            "checkpoint": results.format_number(plain(row["checkpoint"])),
        },
        "logs": [folder_line(p) for p in trial_folders(experiment.path, trial_id)],
        "statistics": None if found is None else _trial_statistics(found),
        "statistics_note": None if found is not None else f"They are {NOT_AVAILABLE}.",
    }


def trial_folders(path: Path, trial_id: str) -> list[Path]:
    """Ray Tune's folders of the trial (``<trainable>_<trial_id>``, with a ``_<config>`` suffix
    in older Ray versions: checkpoint pointers, error.txt after a failure)."""
    named = [*path.glob(f"*_{trial_id}"), *path.glob(f"*_{trial_id}_*")]
    return sorted(p for p in named if p.is_dir())


def folder_line(folder: Path) -> str:
    """The folder and what it holds: Tune's per-trial logs are off (egotune's tables hold every
    metric), so it often holds only the checkpoints Tune registered."""
    names = sorted(p.name for p in folder.iterdir())
    files = [name for name in names if not name.startswith("checkpoint_")]
    checkpoints = len(names) - len(files)
    held = [*files, f"{checkpoints} checkpoint pointer(s)"] if checkpoints else files
    return f"{folder} ({', '.join(held) or 'empty'})"


def _trial_statistics(found: Any) -> dict[str, Any]:
    return {
        "classes": list(found.classes),
        "confusion": [[int(v) for v in line] for line in found.confusion],
        "per_class_accuracy": [plain(v) for v in found.per_class_accuracy],
        "cam_strips": [p.name for p in found.cam_strips],
    }


def comparison(
    experiment: results.Experiment, first: str, second: str, statistics: Statistics
) -> dict[str, Any] | None:
    """Two trials side by side: configurations (differences flagged), summaries, paired test."""
    pair = [trial_detail(experiment, t, statistics) for t in (first, second)]
    if pair[0] is None or pair[1] is None:
        return None
    keys = list(dict.fromkeys([*pair[0]["config"], *pair[1]["config"]]))
    config = [
        [key, pair[0]["config"].get(key, "-"), pair[1]["config"].get(key, "-")] for key in keys
    ]
    test = statistics.paired_test(experiment, first, second)
    return {
        "trials": [first, second],
        "config": [[*line, line[1] != line[2]] for line in config],
        "summary": [
            [key, pair[0]["summary"][key], pair[1]["summary"][key]] for key in pair[0]["summary"]
        ],
        "paired_test": test,
        "paired_note": None if test is not None else f"The paired test is {NOT_AVAILABLE}.",
    }
