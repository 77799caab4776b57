"""Hyperparameter importance from the finished trials, with Optuna's evaluators."""

from __future__ import annotations

from typing import Any

import pandas as pd

from tuner.errors import EgotuneError
from tuner.results._load import FINISHED, hashable, varying_columns

__all__ = ["param_importances"]


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
    frame = hashable(finished, columns)
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
