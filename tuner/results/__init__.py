"""Results of a search as pandas DataFrames: load, group seeds, pivot, rank, compare, plot, export.

An experiment is a folder ``<storage>/<experiment>/`` holding ``trials.parquet`` (one row per
trial), ``epochs.parquet/`` (one row per trial and epoch, as part files) and ``experiment.json``
(see ``docs/results-tables.md``). :func:`load_experiment` reads it with the readers of
``_store``, so it works while a search is still writing (only completed part files are read; a
damaged part is skipped with a warning) and on tables written by older versions (columns added
since then are filled in, see :func:`upgrade_trials` and :func:`upgrade_epochs`).

Repeated seeds are grouped the way the report averages its runs: trials that differ only in
``seed`` (and in their per-trial checkpoint paths) form one configuration, reported as mean ± std
(sample standard deviation) over its ``n`` trials.

The package imports neither ray nor torch; optuna is imported only by :func:`param_importances`
and matplotlib only when a figure is drawn. Modules: ``_store`` (the Parquet tables: schema,
writers, readers), ``_metadata`` (storage folder, ``experiment.json``), ``_load``, ``_tables``,
``_importance``, ``_plots``.
"""

from typing import Any

from tuner.results._cost import (
    COSTS,
    cost_label,
    cost_unit,
    format_cost,
    front_mask,
    pareto_front,
    recommend,
    trial_costs,
)
from tuner.results._importance import param_importances
from tuner.results._load import (
    FINISHED,
    Experiment,
    confirmed_exploits,
    hyperparameter_columns,
    load_experiment,
    resolve_experiment,
    upgrade_epochs,
    upgrade_trials,
    varying_columns,
)
from tuner.results._metadata import (
    METADATA_FILE,
    STORAGE_ENV,
    default_storage,
    read_experiment_metadata,
    write_experiment_metadata,
)
from tuner.results._predictions import (
    PREDICTION_SCHEMA,
    PREDICTIONS_DIR,
    PREDICTIONS_KEY,
    PredictionPartWriter,
    read_predictions,
)
from tuner.results._remote import is_uri, mirror_storage
from tuner.results._stats import (
    LEVEL,
    compare_trials,
    confusion,
    outcomes,
    pivot_marks,
    seed_intervals,
    selected_epoch,
    significance_vs_best,
    trial_accuracies,
    wilson_interval,
)
from tuner.results._store import (
    CAM_DIR,
    COMPUTED_BY,
    EPOCH_SCHEMA,
    EPOCHS_DIR,
    EXPLOIT_ID,
    EXPLOITS_FILE,
    GENERATION,
    SCHEMA_VERSION,
    TRIALS_FILE,
    EpochPartWriter,
    TrialsTableWriter,
    read_epochs,
    read_exploits,
    read_trials,
)
from tuner.results._tables import (
    FOLD_COLUMNS,
    compare_experiments,
    export_experiment,
    fold_table,
    format_number,
    group_seeds,
    list_experiments,
    pivot_table,
    select_trials,
    summarize_experiment,
    top_trials,
)

__all__ = [
    "CAM_DIR",
    "COMPUTED_BY",
    "COSTS",
    "EPOCHS_DIR",
    "EPOCH_SCHEMA",
    "EXPLOITS_FILE",
    "EXPLOIT_ID",
    "FINISHED",
    "FOLD_COLUMNS",
    "GENERATION",
    "LEVEL",
    "METADATA_FILE",
    "PREDICTIONS_DIR",
    "PREDICTIONS_KEY",
    "PREDICTION_SCHEMA",
    "SCHEMA_VERSION",
    "STORAGE_ENV",
    "TRIALS_FILE",
    "EpochPartWriter",
    "Experiment",
    "PredictionPartWriter",
    "TrialsTableWriter",
    "compare_experiments",
    "compare_trials",
    "confirmed_exploits",
    "confusion",
    "cost_label",
    "cost_unit",
    "default_storage",
    "export_experiment",
    "fold_table",
    "format_cost",
    "format_number",
    "front_mask",
    "group_seeds",
    "hyperparameter_columns",
    "is_uri",
    "list_experiments",
    "load_experiment",
    "lr_phases",
    "mirror_storage",
    "outcomes",
    "parallel_axes",
    "param_importances",
    "pareto_front",
    "pivot_marks",
    "pivot_table",
    "plot_confusion",
    "plot_curves",
    "plot_importances",
    "plot_parallel",
    "plot_pareto",
    "plot_pivot",
    "read_epochs",
    "read_experiment_metadata",
    "read_exploits",
    "read_predictions",
    "read_trials",
    "recommend",
    "resolve_experiment",
    "seed_intervals",
    "select_trials",
    "selected_epoch",
    "significance_vs_best",
    "summarize_experiment",
    "top_trials",
    "trial_accuracies",
    "trial_costs",
    "upgrade_epochs",
    "upgrade_trials",
    "varying_columns",
    "wilson_interval",
    "write_experiment_metadata",
]

_FIGURES = {
    "lr_phases": "_plots",
    "parallel_axes": "_plots",
    "plot_curves": "_plots",
    "plot_importances": "_plots",
    "plot_parallel": "_plots",
    "plot_pareto": "_plots",
    "plot_confusion": "_diagnostics",
    "plot_pivot": "_diagnostics",
}


def __getattr__(name: str) -> Any:
    """The figure functions (and the two helpers the web view shares with them): matplotlib
    loads when a figure is first drawn."""
    if name in _FIGURES:
        import importlib

        return getattr(importlib.import_module(f"tuner.results.{_FIGURES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
