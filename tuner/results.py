"""Results of a search as pandas DataFrames: load, group seeds, pivot, rank, compare, export.

An experiment is a folder ``<storage>/<experiment>/`` holding ``trials.parquet`` (one row per
trial), ``epochs.parquet/`` (one row per trial and epoch, as part files) and ``experiment.json``
(see ``docs/results-tables.md``). :func:`load_experiment` reads it with the readers of
:mod:`tuner.experiment`, so it works while a search is still writing (only completed part files are
read; a damaged part is skipped with a warning) and on tables written by older versions (columns
added since then are filled in, see :func:`upgrade_trials` and :func:`upgrade_epochs`).

Repeated seeds are grouped the way the report averages its runs: trials that differ only in
``seed`` (and in their per-trial checkpoint paths) form one configuration, reported as mean ± std
(sample standard deviation) over its ``n`` trials.

This module imports neither ray nor torch; optuna is imported only by :func:`param_importances`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from tuner.errors import EgotuneError
from tuner.experiment import (
    EPOCH_SCHEMA,
    EPOCHS_DIR,
    METADATA_FILE,
    SCHEMA_VERSION,
    TRIALS_FILE,
    read_epochs,
    read_experiment_metadata,
    read_trials,
)

__all__ = [
    "FINISHED",
    "STORAGE_ENV",
    "Experiment",
    "compare_experiments",
    "default_storage",
    "export_experiment",
    "format_number",
    "group_seeds",
    "hyperparameter_columns",
    "list_experiments",
    "load_experiment",
    "param_importances",
    "pivot_table",
    "plot_curves",
    "plot_importances",
    "plot_parallel",
    "resolve_experiment",
    "select_trials",
    "summarize_experiment",
    "top_trials",
    "upgrade_epochs",
    "upgrade_trials",
    "varying_columns",
]

STORAGE_ENV = "EGOTUNE_STORAGE"
FINISHED = "TERMINATED"
"""Status of a trial that ended (ran all its epochs or was stopped early by the scheduler)."""

# Summary columns of trials.parquet and the value a table written before they existed gets.
_SUMMARY_DEFAULTS: dict[str, Any] = {
    "status": FINISHED,  # tables without a status column were written once the search ended
    "best_val_acc": np.nan,
    "best_epoch": pd.NA,
    "epochs_run": pd.NA,
    "wall_seconds": np.nan,
    "checkpoint": None,
    "early_stopped": pd.NA,
    "num_failures": 0,
}
_NOT_HYPERPARAMETERS = {"trial_id", *_SUMMARY_DEFAULTS}


def default_storage() -> Path:
    """``$EGOTUNE_STORAGE``, else ``~/egotune-results`` (the rule of ``egotune search``)."""
    env = os.environ.get(STORAGE_ENV)
    return Path(env).expanduser() if env else Path.home() / "egotune-results"


def _is_experiment_dir(path: Path) -> bool:
    names = (TRIALS_FILE, EPOCHS_DIR, METADATA_FILE)
    return path.is_dir() and any((path / name).exists() for name in names)


def resolve_experiment(exp: str | os.PathLike[str], storage: str | os.PathLike[str] | None) -> Path:
    """The folder of experiment ``exp``: a name under ``storage`` or a path to the folder itself.

    Raises :class:`EgotuneError` naming what was looked for when neither exists.
    """
    root = Path(storage).expanduser() if storage is not None else default_storage()
    candidate = root / exp
    if _is_experiment_dir(candidate):
        return candidate
    direct = Path(exp).expanduser()
    if _is_experiment_dir(direct):
        return direct
    raise EgotuneError(
        f"experiment {str(exp)!r}: no results in {candidate} "
        f"(list them with: egotune results list --storage {root})"
    )


@dataclass(frozen=True)
class Experiment:
    """One experiment's tables, as read at one moment."""

    name: str
    path: Path
    trials: pd.DataFrame
    """One row per trial (``trials.parquet``), summary columns filled for older tables."""
    epochs: pd.DataFrame
    """One row per (trial_id, epoch) from the completed part files, sorted by them."""
    metadata: dict[str, Any]
    """``experiment.json`` (empty when the folder has none)."""
    schema_version: int
    """Version of the trials table as written (0 for tables that predate versioning)."""

    @property
    def hyperparameters(self) -> list[str]:
        """The hyperparameter columns of :attr:`trials`, ``seed`` included."""
        return hyperparameter_columns(self.trials)

    @property
    def finished(self) -> pd.DataFrame:
        """The trials that ended, with a value in ``best_val_acc``."""
        done = self.trials[self.trials["status"] == FINISHED]
        return done.dropna(subset=["best_val_acc"])


def load_experiment(
    exp: str | os.PathLike[str], storage: str | os.PathLike[str] | None = None
) -> Experiment:
    """Read experiment ``exp`` (a name under ``storage``, or a folder path) into DataFrames."""
    path = resolve_experiment(exp, storage)
    epochs = upgrade_epochs(read_epochs(path))
    trials = upgrade_trials(read_trials(path), epochs)
    try:
        metadata = read_experiment_metadata(path)
    except FileNotFoundError:
        metadata = {}
    return Experiment(path.name, path, trials, epochs, metadata, _trials_schema_version(path))


def _trials_schema_version(path: Path) -> int:
    file = path / TRIALS_FILE
    if not file.is_file():
        return SCHEMA_VERSION
    try:
        metadata = pq.read_schema(file).metadata or {}
    except (OSError, ValueError):
        return SCHEMA_VERSION
    return int(metadata.get(b"schema_version", b"0"))


def upgrade_epochs(epochs: pd.DataFrame) -> pd.DataFrame:
    """``epochs`` with every column of the current layout; older tables lack some.

    A table without stages is one stage long (``stage`` 1, ``stage_epoch`` = ``epoch``); missing
    metrics are NaN.
    """
    epochs = epochs.copy()
    if "stage" not in epochs.columns:
        epochs["stage"] = 1
    if "stage_epoch" not in epochs.columns:
        epochs["stage_epoch"] = epochs["epoch"]
    for name in EPOCH_SCHEMA.names:
        if name not in epochs.columns and name != "extra":
            epochs[name] = np.nan
    return epochs


def upgrade_trials(trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """``trials`` with every summary column of the current layout; older tables lack some.

    ``best_val_acc``, ``best_epoch`` and ``epochs_run`` missing from the table are computed from
    ``epochs``; other missing columns take their neutral value.
    """
    trials = trials.copy()
    derived = _summary_from_epochs(epochs)
    for name, default in _SUMMARY_DEFAULTS.items():
        if name in trials.columns:
            continue
        if name in derived.columns:
            trials[name] = trials["trial_id"].map(derived[name])
        else:
            trials[name] = default
    return trials


def _summary_from_epochs(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per trial_id: best_val_acc, best_epoch and epochs_run computed from the epoch rows."""
    runs = epochs.dropna(subset=["val_acc"])
    if runs.empty:
        return pd.DataFrame(columns=["best_val_acc", "best_epoch", "epochs_run"])
    best_rows = runs.loc[runs.groupby("trial_id")["val_acc"].idxmax()].set_index("trial_id")
    return pd.DataFrame(
        {
            "best_val_acc": best_rows["val_acc"],
            "best_epoch": best_rows["epoch"],
            "epochs_run": epochs.groupby("trial_id")["epoch"].max(),
        }
    )


def hyperparameter_columns(trials: pd.DataFrame) -> list[str]:
    """Columns of ``trials`` that hold the trial's configuration, ``seed`` included.

    Per-trial paths (``checkpoint``, ``init_checkpoint``, any ``*_checkpoint``) are left out: two
    runs of one configuration differ there.
    """
    return [
        name
        for name in trials.columns
        if name not in _NOT_HYPERPARAMETERS and not str(name).endswith("checkpoint")
    ]


def varying_columns(trials: pd.DataFrame, columns: Sequence[str] | None = None) -> list[str]:
    """The hyperparameter columns (or ``columns``) that take more than one value in ``trials``."""
    names = hyperparameter_columns(trials) if columns is None else list(columns)
    hashable = _hashable(trials, names)
    return [n for n in names if hashable[n].nunique(dropna=False) > 1]


def _hashable(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` with list values (``milestones``) in ``columns`` as JSON text, ``[30, 70]``."""
    frame = frame.copy()
    for name in columns:
        if frame[name].dtype == object:
            frame[name] = frame[name].map(_hashable_value)
    return frame


def _hashable_value(value: Any) -> Any:
    if isinstance(value, list | tuple | np.ndarray):
        return json.dumps([v.item() if hasattr(v, "item") else v for v in value])
    return value


def group_seeds(trials: pd.DataFrame, value: str = "best_val_acc") -> pd.DataFrame:
    """One row per configuration: trials that differ only in ``seed`` are grouped.

    Returns the configuration columns, then ``mean``, ``std`` (sample, NaN for one trial), ``n``,
    ``best`` (the highest ``value``), ``seeds`` and ``trial_ids`` (lists) and ``epochs_run`` (the
    sum over the group), sorted by ``mean`` descending. Trials without ``value`` are left out.
    """
    _require_columns(trials, [value], "value")
    keys = [c for c in hyperparameter_columns(trials) if c != "seed"]
    rows = _hashable(trials.dropna(subset=[value]), keys)
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


def top_trials(
    trials: pd.DataFrame, k: int = 5, value: str = "best_val_acc", *, group: bool = True
) -> pd.DataFrame:
    """The ``k`` best configurations (seeds grouped, :func:`group_seeds`) or single trials."""
    if k < 1:
        raise ValueError(f"k: must be 1 or more, got {k}")
    if group:
        return group_seeds(trials, value).head(k)
    _require_columns(trials, [value], "value")
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
    (``mean`` or ``max``); row combinations that never ran are left out, cells not run are
    NaN. List values are shown as text.
    """
    if agg not in ("mean", "max"):
        raise ValueError(f"agg: expected mean or max, got {agg!r}")
    if not rows:
        raise ValueError("rows: name at least one column")
    _require_columns(trials, [*rows, *cols], "rows/cols")
    _require_columns(trials, [value], "value")
    frame = _hashable(trials.dropna(subset=[value]), [*rows, *cols])
    table = frame.pivot_table(
        index=list(rows), columns=list(cols) or None, values=value, aggfunc=agg, dropna=True
    )
    if isinstance(table, pd.Series):
        table = table.to_frame(value)
    return table.sort_index().sort_index(axis=1)


def _require_columns(frame: pd.DataFrame, names: Sequence[str], what: str) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        known = ", ".join(str(c) for c in frame.columns)
        raise ValueError(f"{what}: no column {', '.join(missing)} in the trials (columns: {known})")


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
        "mean": _plain(finished[value].mean()),
        "std": _plain(finished[value].std()),
        "best": None,
        "best_trial": None,
        "best_configuration": None,
    }
    if not finished.empty:
        best = finished.loc[finished[value].idxmax()]
        summary.update(best=_plain(best[value]), best_trial=str(best["trial_id"]))
        top = group_seeds(finished, value).iloc[0]
        keys = [c for c in hyperparameter_columns(finished) if c != "seed"]
        summary["best_configuration"] = {
            "params": {k: _plain(top[k]) for k in varying_columns(finished, keys)},
            "mean": _plain(top["mean"]),
            "std": _plain(top["std"]),
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
    root = Path(storage).expanduser() if storage is not None else default_storage()
    if not root.is_dir():
        raise EgotuneError(f"--storage {root}: no such folder")
    rows = []
    for path in sorted(root.iterdir()):
        if path.name.startswith(("_", ".")) or not _is_experiment_dir(path):
            continue
        experiment = load_experiment(path)
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


def param_importances(
    trials: pd.DataFrame,
    value: str = "best_val_acc",
    *,
    evaluator: str = "ped-anova",
    seed: int = 0,
) -> pd.Series:
    """Importance of each varying hyperparameter for ``value`` over the finished trials.

    The finished trials are added to an in-memory Optuna study and ranked with Optuna's
    ``ped-anova`` evaluator or its ``fanova`` one (seeded; it needs scikit-learn). Numbers become
    float or int distributions (float on a log scale when positive and spanning two decades or
    more); anything else, and columns with missing values, become categorical text. Returns
    importances summing to 1, highest first. ``seed`` is ranked too: its share shows how much
    run-to-run noise matters.
    """
    import optuna

    finished = trials[trials["status"] == FINISHED].dropna(subset=[value])
    columns = varying_columns(finished)
    if len(finished) < 2 or not columns:
        raise ValueError(
            f"importance needs 2 or more finished trials with a varying hyperparameter, "
            f"got {len(finished)} trials and {len(columns)} varying columns"
        )
    frame = _hashable(finished, columns)
    distributions = {name: _distribution(frame[name]) for name in columns}
    study = _study_of(frame, distributions, value)
    evaluators = {
        "fanova": lambda: optuna.importance.FanovaImportanceEvaluator(seed=seed),
        "ped-anova": lambda: optuna.importance.PedAnovaImportanceEvaluator(),
    }
    if evaluator not in evaluators:
        raise ValueError(f"evaluator: expected one of {', '.join(evaluators)}, got {evaluator!r}")
    try:
        chosen = evaluators[evaluator]()
    except ImportError as exc:
        raise EgotuneError(f"evaluator {evaluator}: {exc} (or use ped-anova)") from None
    importances = optuna.importance.get_param_importances(study, evaluator=chosen)
    series = pd.Series(importances, name="importance", dtype=float)
    return series.sort_values(ascending=False, kind="stable")


def _study_of(frame: pd.DataFrame, distributions: dict[str, Any], value: str) -> Any:
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize")
    finally:
        optuna.logging.set_verbosity(previous)
    for _, row in frame.iterrows():
        params = {name: _param_value(row[name], d) for name, d in distributions.items()}
        trial = optuna.trial.create_trial(
            params=params, distributions=distributions, value=float(row[value])
        )
        study.add_trial(trial)
    return study


def _distribution(column: pd.Series) -> Any:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if numeric and not column.isna().any():
        low, high = column.min(), column.max()
        if pd.api.types.is_integer_dtype(column):
            return IntDistribution(int(low), int(high))
        log = bool(low > 0 and high / low >= 100)
        return FloatDistribution(float(low), float(high), log=log)
    return CategoricalDistribution(sorted({str(v) for v in column}))


def _param_value(value: Any, distribution: Any) -> Any:
    from optuna.distributions import FloatDistribution, IntDistribution

    if isinstance(distribution, IntDistribution):
        return int(value)
    if isinstance(distribution, FloatDistribution):
        return float(value)
    return str(value)


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


def plot_curves(
    experiment: Experiment, trial_ids: Sequence[str], out: str | os.PathLike[str]
) -> Path:
    """PNG of accuracy and loss by epoch for ``trial_ids``, LR phases and stages marked."""
    from tuner._plots import plot_curves as draw

    names = hyperparameter_columns(experiment.trials)
    shown = varying_columns(experiment.trials, names)
    rows = experiment.trials.set_index("trial_id")
    titles = {
        t: ", ".join([t, *(f"{c}={format_number(rows.at[t, c])}" for c in shown)])
        for t in trial_ids
        if t in rows.index
    }
    return draw(experiment.epochs, trial_ids, out, titles=titles)


def plot_importances(
    importances: pd.Series, out: str | os.PathLike[str], *, title: str = ""
) -> Path:
    """PNG bar plot of :func:`param_importances`."""
    from tuner._plots import plot_importances as draw

    return draw(importances, out, title=title)


def plot_parallel(
    experiment: Experiment,
    out: str | os.PathLike[str],
    value: str = "best_val_acc",
    columns: Sequence[str] | None = None,
) -> Path:
    """Parallel coordinates of the trials with a ``value``: ``.html`` (inline SVG) or PNG.

    ``columns`` defaults to the hyperparameters that vary.
    """
    from tuner._plots import parallel_html
    from tuner._plots import plot_parallel as draw

    trials = experiment.trials.dropna(subset=[value]).reset_index(drop=True)
    if trials.empty:
        raise ValueError(f"{experiment.name}: no trial with {value} yet")
    columns = list(columns) if columns is not None else varying_columns(trials)
    _require_columns(trials, columns, "params")
    trials = _hashable(trials, columns)
    if Path(out).suffix.lower() in (".html", ".htm"):
        return parallel_html(trials, columns, value, out, title=f"{experiment.name}: {value}")
    return draw(trials, columns, value, out)


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
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
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


def _plain(value: Any) -> Any:
    """A numpy or pandas scalar as a JSON-ready Python value (NaN and NA as ``None``)."""
    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
