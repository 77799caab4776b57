"""Tables of an experiment: seed groups, top trials, pivots, summaries, comparisons, export."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tuner.atomic import write_text_atomic
from tuner.errors import EgotuneError
from tuner.results._load import (
    Experiment,
    hashable,
    hyperparameter_columns,
    is_experiment_dir,
    load_experiment,
    require_columns,
    varying_columns,
)
from tuner.results._metadata import default_storage
from tuner.results._remote import is_uri, mirror_storage
from tuner.results._store import TRIALS_FILE, storage_write_error, write_table_atomic

__all__ = [
    "FOLD_COLUMNS",
    "compare_experiments",
    "export_experiment",
    "fold_table",
    "format_number",
    "group_seeds",
    "list_experiments",
    "pivot_table",
    "plain",
    "select_trials",
    "summarize_experiment",
    "top_trials",
]


FOLD_COLUMNS = ("train_users", "val_users")
"""Columns a cross-validation fold sets (``folds`` in a space file)."""


def group_seeds(trials: pd.DataFrame, value: str = "best_val_acc") -> pd.DataFrame:
    """One row per configuration: trials that differ only in ``seed`` (or, in a cross-validated
    experiment, in their fold's users) are grouped.

    Returns the configuration columns, then ``mean``, ``std`` (sample, NaN for one trial), ``n``,
    ``best`` (the highest ``value``), ``seeds`` and ``trial_ids`` (lists) and ``epochs_run`` (the
    sum over the group), sorted by ``mean`` descending. Trials without ``value`` are left out.
    """
    require_columns(trials, [value], "value")
    keys = [c for c in hyperparameter_columns(trials) if c not in ("seed", *FOLD_COLUMNS)]
    rows = hashable(trials.dropna(subset=[value]), keys)
    if "seed" not in rows.columns:
        rows = rows.assign(seed=pd.NA)
    if not keys:  # nothing varies but the seed: the whole table is one configuration
        rows = rows.assign(configuration="all")
        keys = ["configuration"]
    grouped = rows.groupby(keys, dropna=False, sort=False)
    table = grouped.agg(
        mean=(value, "mean"),
        std=(value, "std"),
        n=(value, "size"),
        best=(value, "max"),
        seeds=("seed", list),
        trial_ids=("trial_id", list),
        epochs_run=("epochs_run", "sum"),
    ).reset_index()
    table = table.sort_values(["mean", "best"], ascending=False, kind="stable")
    return table.reset_index(drop=True)


def fold_table(
    trials: pd.DataFrame, value: str = "best_val_acc"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A cross-validated experiment by fold: ``value`` per configuration (rows, mean over seeds)
    and held-out users (columns), and per configuration the ``mean``, ``std`` and ``n`` over its
    folds. Raises ``ValueError`` when the validation users do not vary."""
    require_columns(trials, [value], "value")
    no_folds = (
        "folds: this search has no cross-validation folds (its trials share their validation "
        "users); a space with folds: {leave_one_user_out: [...]} has them "
        "(docs/search-spaces.md), and egotune results top shows this one's seeds"
    )
    if "val_users" not in trials.columns:
        raise ValueError(no_folds)
    done = hashable(trials.dropna(subset=[value]), ["val_users"])
    if done["val_users"].nunique() < 2:
        raise ValueError(no_folds)
    done["fold"] = done["val_users"].map(_fold_name)
    keys = [c for c in varying_columns(done) if c not in ("seed", "fold", *FOLD_COLUMNS)]
    done = hashable(done, keys)
    if not keys:
        done, keys = done.assign(configuration="all"), ["configuration"]
    per_fold = done.pivot_table(index=keys, columns="fold", values=value, aggfunc="mean")
    summary = per_fold.agg(["mean", "std", "count"], axis=1).rename(columns={"count": "n"})
    summary = summary.reset_index().sort_values("mean", ascending=False, kind="stable")
    return per_fold, summary.reset_index(drop=True)


def _fold_name(users: Any) -> str:
    """``'["S2"]'`` (a list as the trials table stores it) -> ``S2``."""
    try:
        parsed = json.loads(users) if isinstance(users, str) else users
    except ValueError:
        return str(users)
    return "+".join(str(u) for u in parsed) if isinstance(parsed, list) else str(parsed)


def top_trials(
    trials: pd.DataFrame, k: int = 5, value: str = "best_val_acc", *, group: bool = True
) -> pd.DataFrame:
    """The ``k`` best configurations (seeds grouped, :func:`group_seeds`) or single trials."""
    if k < 1:
        raise ValueError(f"k: must be 1 or more, got {k}")
    if group:
        return group_seeds(trials, value).head(k)
    require_columns(trials, [value], "value")
    ranked = trials.dropna(subset=[value]).sort_values(value, ascending=False, kind="stable")
    columns = ["trial_id", "status", *hyperparameter_columns(trials), value, "epochs_run"]
    return ranked[list(dict.fromkeys(columns))].head(k).reset_index(drop=True)


def pivot_table(
    trials: pd.DataFrame,
    rows: Sequence[str],
    cols: Sequence[str],
    value: str = "best_val_acc",
    agg: str = "mean",
) -> pd.DataFrame:
    """``value`` laid out like the report's Fig. 10: index ``rows``, columns ``cols``.

    Cells aggregate the trials of each combination (repeated seeds included) with ``agg``
    (``mean``, ``max`` or ``std``, the sample standard deviation); row combinations that never
    ran are left out, cells not run are NaN. List values are shown as text.
    """
    if agg not in ("mean", "max", "std"):
        raise ValueError(f"agg: expected mean, max or std, got {agg!r}")
    if not rows:
        raise ValueError("rows: name at least one column")
    require_columns(trials, [*rows, *cols], "rows/cols")
    both = [c for c in rows if c in cols]
    if both:
        raise ValueError(f"rows/cols: {', '.join(both)} in both; put each column on one side")
    require_columns(trials, [value], "value")
    frame = hashable(trials.dropna(subset=[value]), [*rows, *cols])
    table = frame.pivot_table(
        index=list(rows), columns=list(cols) or None, values=value, aggfunc=agg, dropna=True
    )
    if isinstance(table, pd.Series):
        table = table.to_frame(value)
    return table.sort_index().sort_index(axis=1)


def summarize_experiment(experiment: Experiment, value: str = "best_val_acc") -> dict[str, Any]:
    """Headline numbers of one experiment, as plain JSON-ready values.

    ``best`` is the best single trial, ``best_configuration`` the best seed group (mean ± std over
    its trials), ``mean``/``std`` run over every finished trial, and ``epochs`` is the sum of
    ``epochs_run`` over all trials (the training the search consumed).
    """
    trials, finished = experiment.trials, experiment.finished.dropna(subset=[value])
    summary: dict[str, Any] = {
        "experiment": experiment.name,
        "space": (experiment.metadata.get("space") or {}).get("name"),
        "trials": len(trials),
        "finished": len(finished),
        "status": {str(k): int(v) for k, v in trials["status"].value_counts().items()},
        "epochs": int(pd.to_numeric(trials["epochs_run"], errors="coerce").fillna(0).sum()),
        "wall_hours": float(pd.to_numeric(trials["wall_seconds"]).fillna(0).sum() / 3600),
        "mean": plain(finished[value].mean()),
        "std": plain(finished[value].std()),
        "best": None,
        "best_trial": None,
        "best_configuration": None,
    }
    if not finished.empty:
        best = finished.loc[finished[value].idxmax()]
        summary.update(best=plain(best[value]), best_trial=str(best["trial_id"]))
        top = group_seeds(finished, value).iloc[0]
        keys = [c for c in hyperparameter_columns(finished) if c != "seed"]
        summary["best_configuration"] = {
            "params": {k: plain(top[k]) for k in varying_columns(finished, keys)},
            "mean": plain(top["mean"]),
            "std": plain(top["std"]),
            "n": int(top["n"]),
        }
    return summary


def compare_experiments(
    experiments: Sequence[Experiment], value: str = "best_val_acc"
) -> pd.DataFrame:
    """:func:`summarize_experiment` of each experiment, one column per experiment."""
    rows = {}
    for experiment in experiments:
        summary = summarize_experiment(experiment, value)
        config = summary.pop("best_configuration") or {}
        summary.pop("status")
        label = experiment.name if experiment.name not in rows else str(experiment.path)
        rows[label] = {
            **summary,
            "best_config_mean": config.get("mean"),
            "best_config_std": config.get("std"),
            "best_config_n": config.get("n"),
            "best_config": json.dumps(config.get("params", {})),
        }
    return pd.DataFrame(rows)


def list_experiments(storage: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """One row per experiment folder in ``storage``: space, trial counts by status, best, dates.

    ``started_at`` comes from ``experiment.json``; ``updated_at`` is when ``trials.parquet`` (or
    the folder) last changed, in UTC.
    """
    if is_uri(storage):
        root = mirror_storage(str(storage), tables=False)
    else:
        root = Path(storage).expanduser() if storage is not None else default_storage()
    if not root.is_dir():
        raise EgotuneError(f"--storage {root}: no such folder")
    rows = []
    for path in sorted(root.iterdir()):
        if path.name.startswith(("_", ".")) or not is_experiment_dir(path):
            continue
        try:
            experiment = load_experiment(path)
        except (EgotuneError, OSError, ValueError) as exc:
            warnings.warn(f"skipping experiment {path.name}: {exc}", stacklevel=2)
            continue
        summary = summarize_experiment(experiment)
        changed = path / TRIALS_FILE if (path / TRIALS_FILE).exists() else path
        updated = datetime.fromtimestamp(changed.stat().st_mtime, UTC)
        rows.append(
            {
                "experiment": experiment.name,
                "space": summary["space"],
                "trials": summary["trials"],
                "status": summary["status"],
                "best": summary["best"],
                "started_at": experiment.metadata.get("started_at"),
                "updated_at": updated.isoformat(timespec="seconds"),
            }
        )
    columns = ["experiment", "space", "trials", "status", "best", "started_at", "updated_at"]
    return pd.DataFrame(rows, columns=columns)


def select_trials(
    experiment: Experiment,
    trial_ids: Sequence[str] | None = None,
    top: int | None = None,
    value: str = "best_val_acc",
) -> list[str]:
    """``trial_ids`` checked against the experiment, or the ``top`` trials by ``value``.

    With neither, the single best trial. Trials not in the epochs table are an error.
    """
    known = set(experiment.epochs["trial_id"])
    if trial_ids:
        unknown = [t for t in trial_ids if t not in known]
        if unknown:
            raise ValueError(f"trials: no epochs recorded for {', '.join(unknown)}")
        return list(trial_ids)
    ranked = top_trials(experiment.trials, k=top or 1, value=value, group=False)
    chosen = [t for t in ranked["trial_id"] if t in known]
    if not chosen:
        raise ValueError(f"{experiment.name}: no trial with {value} and recorded epochs yet")
    return chosen


def export_experiment(
    experiment: Experiment, fmt: str, out: str | os.PathLike[str], *, epochs: bool = False
) -> Path:
    """Write the trials table (or, with ``epochs``, the epochs table) as ``csv`` or ``parquet``."""
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"format: expected csv or parquet, got {fmt!r}")
    table = experiment.epochs if epochs else experiment.trials
    path = Path(out).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        text = table.to_csv(index=False)
        try:
            write_text_atomic(path, text)
        except OSError as exc:
            raise storage_write_error(exc, path) from None
    else:
        write_table_atomic(pa.Table.from_pandas(table, preserve_index=False), path)
    return path


def format_number(value: Any) -> str:
    """A hyperparameter value as the report prints it: ``1e-04``, ``0.1``, ``[30, 70]``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float | np.floating):
        value = float(value)
        if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
            mantissa, exponent = f"{value:.2e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"
        return f"{value:.4g}"
    return str(value)


def plain(value: Any) -> Any:
    """A numpy or pandas scalar as a JSON-ready Python value (NaN and NA as ``None``)."""
    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
