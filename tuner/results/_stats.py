"""Telling signal from noise: intervals, paired tests and multiple-comparison corrections.

GTEA61's validation split (user S2) has 116 videos: one video is 0.86 points of accuracy, and the
binomial standard error of an accuracy near 70 % is about 4.3 points. Everything here works on
the per-video outcomes of ``predictions.parquet`` (:mod:`tuner.results._predictions`):

* :func:`trial_accuracies`: each trial's accuracy at its selected (best) epoch with a Wilson
  interval over the videos, beside its last epoch and the mean of its last few epochs (the
  selected epoch is chosen on the same videos, so it is optimistic);
* :func:`compare_trials`: two trials on the same videos: the discordant pairs, the exact McNemar
  test and a bootstrap interval of the difference in accuracy (videos resampled in pairs);
* :func:`significance_vs_best`: every trial against the best one, Holm-corrected;
* :func:`seed_intervals`: a t interval of the mean over repeated seeds (or folds);
* :func:`confusion`: the confusion matrix, per-class accuracy and the most confused pairs.

Statistics come from statsmodels (Wilson interval, exact McNemar, Holm) and SciPy (bootstrap,
t quantiles), imported when first used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tuner.results._load import FINISHED, Experiment, hashable, varying_columns

__all__ = [
    "LEVEL",
    "compare_trials",
    "confusion",
    "outcomes",
    "pivot_marks",
    "seed_intervals",
    "selected_epoch",
    "significance_vs_best",
    "trial_accuracies",
    "wilson_interval",
]

LEVEL = 0.95
"""Confidence level of every interval (and 1 - the significance level of the tests)."""


def wilson_interval(correct: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of an accuracy, in percent (NaN for ``n == 0``)."""
    if n <= 0:
        return math.nan, math.nan
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(correct, n, alpha=1 - level, method="wilson")
    return 100.0 * float(low), 100.0 * float(high)


def selected_epoch(experiment: Experiment, trial_id: str, epoch: int | str = "best") -> int:
    """The epoch ``epoch`` names for a trial: ``best`` (the selected epoch of the trials table),
    ``last``, or a number."""
    if trial_id not in set(experiment.trials["trial_id"]):
        known = ", ".join(sorted(map(str, experiment.trials["trial_id"]))[:8])
        raise ValueError(f"{experiment.name}: no trial {trial_id!r} (trials: {known})")
    if isinstance(epoch, int) or (isinstance(epoch, str) and epoch.isdigit()):
        return int(epoch)
    runs = experiment.epochs[experiment.epochs["trial_id"] == trial_id]
    if runs.empty:
        raise ValueError(f"trial {trial_id}: no epochs recorded")
    if epoch == "last":
        return int(runs["epoch"].max())
    if epoch != "best":
        raise ValueError(f"--epoch: expected best, last or a number, got {epoch!r}")
    row = experiment.trials.set_index("trial_id").loc[trial_id]
    best = row.get("best_epoch")
    if best is None or pd.isna(best):
        return int(runs.loc[runs["val_acc"].idxmax(), "epoch"])
    return int(best)


def outcomes(experiment: Experiment, trial_id: str, epoch: int | str = "best") -> pd.Series:
    """Whether each validation video was classified correctly (index: video) at ``epoch``."""
    chosen = selected_epoch(experiment, trial_id, epoch)
    rows = experiment.predictions
    rows = rows[(rows["trial_id"] == trial_id) & (rows["epoch"] == chosen)]
    if rows.empty:
        raise ValueError(
            f"trial {trial_id}: no predictions for epoch {chosen} (experiments written before "
            "predictions.parquet existed have none)"
        )
    return rows.set_index("video")["correct"].astype(bool)


def trial_accuracies(
    experiment: Experiment, *, last_k: int = 5, level: float = LEVEL
) -> pd.DataFrame:
    """One row per trial with a selected epoch: the varying hyperparameters, ``epoch`` (the
    selected one), ``acc`` there with ``ci_low``/``ci_high`` over ``videos`` videos, and the
    ``last_epoch``, ``last_acc`` and ``last_k_mean`` (mean validation accuracy of the last
    ``last_k`` epochs). Intervals are NaN for trials without predictions."""
    if last_k < 1:
        raise ValueError(f"--last: must be 1 or more, got {last_k}")
    trials = experiment.trials.dropna(subset=["best_epoch"])
    shown = varying_columns(trials) if not trials.empty else []
    predictions = experiment.predictions
    rows = []
    for _, trial in trials.iterrows():
        trial_id = str(trial["trial_id"])
        runs = experiment.epochs[experiment.epochs["trial_id"] == trial_id].sort_values("epoch")
        epoch = int(trial["best_epoch"])
        picked = predictions[
            (predictions["trial_id"] == trial_id) & (predictions["epoch"] == epoch)
        ]
        n, correct = len(picked), int(picked["correct"].sum())
        low, high = wilson_interval(correct, n, level) if n else (math.nan, math.nan)
        acc = 100.0 * correct / n if n else float(trial["best_val_acc"])
        rows.append(
            {
                "trial_id": trial_id,
                "status": trial["status"],
                **{name: trial[name] for name in shown},
                "epoch": epoch,
                "acc": acc,
                "ci_low": low,
                "ci_high": high,
                "videos": n,
                "last_epoch": int(runs["epoch"].max()) if len(runs) else pd.NA,
                "last_acc": float(runs["val_acc"].iloc[-1]) if len(runs) else math.nan,
                "last_k_mean": float(runs["val_acc"].tail(last_k).mean())
                if len(runs)
                else math.nan,
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values("acc", ascending=False, kind="stable").reset_index(drop=True)


def compare_trials(
    first: pd.Series,
    second: pd.Series,
    *,
    level: float = LEVEL,
    resamples: int = 9999,
    seed: int = 0,
) -> dict[str, Any]:
    """Paired comparison of two trials' per-video outcomes (:func:`outcomes`) on the videos both
    have: accuracies, the 2x2 counts, the exact McNemar p-value on the discordant pairs and a
    bootstrap interval (percentile, ``resamples`` paired resamples) of the difference in points."""
    from scipy.stats import bootstrap
    from statsmodels.stats.contingency_tables import mcnemar

    videos = first.index.intersection(second.index)
    if len(videos) == 0:
        raise ValueError("the two trials share no validation video")
    a = first.loc[videos].to_numpy(dtype=bool)
    b = second.loc[videos].to_numpy(dtype=bool)
    only_first, only_second = int((a & ~b).sum()), int((~a & b).sum())
    both_right, both_wrong = int((a & b).sum()), int((~a & ~b).sum())
    table = [[both_right, only_first], [only_second, both_wrong]]
    p_value = float(mcnemar(table, exact=True).pvalue) if only_first + only_second else 1.0
    difference = 100.0 * (a.mean() - b.mean())
    low = high = math.nan
    if not resamples:
        pass  # a test only (see significance_vs_best)
    elif only_first + only_second:

        def statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
            return 100.0 * (np.mean(x, axis=axis) - np.mean(y, axis=axis))

        interval = bootstrap(
            (a.astype(float), b.astype(float)),
            statistic,
            paired=True,
            vectorized=True,
            n_resamples=resamples,
            confidence_level=level,
            method="percentile",
            rng=np.random.default_rng(seed),
        ).confidence_interval
        low, high = float(interval.low), float(interval.high)
    else:  # identical outcomes on every video: no variation to resample
        low = high = float(difference)
    return {
        "videos": len(videos),
        "acc_first": 100.0 * float(a.mean()),
        "acc_second": 100.0 * float(b.mean()),
        "difference": float(difference),
        "ci_low": low,
        "ci_high": high,
        "both_right": both_right,
        "only_first_right": only_first,
        "only_second_right": only_second,
        "both_wrong": both_wrong,
        "p_value": p_value,
        "level": level,
    }


def significance_vs_best(experiment: Experiment, *, level: float = LEVEL) -> pd.DataFrame:
    """Every finished trial with predictions against the best one (highest selected-epoch
    accuracy) on the same videos: exact McNemar p-values, Holm-corrected over the comparisons.

    Columns: ``trial_id``, ``acc``, ``p_value``, ``p_holm`` and ``distinguishable`` (``p_holm``
    below ``1 - level``); the best trial itself has NaN p-values and is not distinguishable.
    """
    from statsmodels.stats.multitest import multipletests

    accuracies = trial_accuracies(experiment, level=level)
    if accuracies.empty:
        return pd.DataFrame(columns=["trial_id", "acc", "p_value", "p_holm", "distinguishable"])
    finished = accuracies[(accuracies["status"] == FINISHED) & (accuracies["videos"] > 0)]
    if finished.empty:
        raise ValueError(f"{experiment.name}: no finished trial has predictions")
    best_id = str(finished.iloc[0]["trial_id"])
    best = outcomes(experiment, best_id)
    rows = []
    for _, trial in finished.iterrows():
        trial_id = str(trial["trial_id"])
        if trial_id == best_id:
            rows.append({"trial_id": trial_id, "acc": trial["acc"], "p_value": math.nan})
            continue
        test = compare_trials(best, outcomes(experiment, trial_id), level=level, resamples=0)
        rows.append({"trial_id": trial_id, "acc": trial["acc"], "p_value": test["p_value"]})
    frame = pd.DataFrame(rows)
    tested = frame["p_value"].notna()
    frame["p_holm"] = math.nan
    if tested.any():
        corrected = multipletests(frame.loc[tested, "p_value"], alpha=1 - level, method="holm")
        frame.loc[tested, "p_holm"] = corrected[1]
    frame["distinguishable"] = frame["p_holm"] < 1 - level
    frame["best"] = frame["trial_id"] == best_id
    return frame


def pivot_marks(
    experiment: Experiment,
    rows: Sequence[str],
    cols: Sequence[str],
    *,
    value: str = "best_val_acc",
    level: float = LEVEL,
) -> pd.DataFrame:
    """Booleans laid out like :func:`tuner.results.pivot_table` of the same ``rows``/``cols``:
    True where no trial of the cell is distinguishable from the best trial
    (:func:`significance_vs_best`), the best trial's own cell included."""
    tests = significance_vs_best(experiment, level=level).set_index("trial_id")
    trials = experiment.trials[experiment.trials["trial_id"].isin(tests.index)].copy()
    trials["_tied"] = ~tests.loc[trials["trial_id"], "distinguishable"].to_numpy(dtype=bool)
    frame = hashable(trials, [*rows, *cols])
    table = frame.pivot_table(
        index=list(rows), columns=list(cols) or None, values="_tied", aggfunc="all"
    )
    if isinstance(table, pd.Series):
        table = table.to_frame(value)  # named as pivot_table names its single column
    return table.sort_index().sort_index(axis=1).astype(bool)


def seed_intervals(groups: pd.DataFrame, *, level: float = LEVEL) -> pd.DataFrame:
    """``groups`` (from :func:`tuner.results.group_seeds`) with a t interval of each mean over its
    ``n`` trials (``ci_low``, ``ci_high``; NaN for a single trial)."""
    from scipy.stats import t

    frame = groups.copy()
    n = frame["n"].astype(float)
    half = t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)) * frame["std"] / np.sqrt(n)
    half[n < 2] = math.nan
    frame["ci_low"], frame["ci_high"] = frame["mean"] - half, frame["mean"] + half
    return frame


def confusion(
    experiment: Experiment, trial_id: str, epoch: int | str = "best", *, pairs: int = 10
) -> dict[str, Any]:
    """Confusion matrix (rows: true class, columns: predicted class, counts) of a trial at an
    epoch, the accuracy of each class, and the ``pairs`` most frequent (true, predicted) errors."""
    chosen = selected_epoch(experiment, trial_id, epoch)
    rows = experiment.predictions
    rows = rows[(rows["trial_id"] == trial_id) & (rows["epoch"] == chosen)]
    if rows.empty:
        raise ValueError(f"trial {trial_id}: no predictions for epoch {chosen}")
    classes = sorted(set(rows["true_class"]) | set(rows["pred_class"]))
    matrix = pd.crosstab(rows["true_class"], rows["pred_class"]).reindex(
        index=classes, columns=classes, fill_value=0
    )
    per_class = rows.groupby("true_class")["correct"].agg(["mean", "size"])
    per_class = per_class.rename(columns={"mean": "acc", "size": "videos"})
    per_class["acc"] *= 100.0
    errors = rows[~rows["correct"]].groupby(["true_class", "pred_class"]).size()
    top = errors.sort_values(ascending=False, kind="stable").head(pairs)
    return {
        "trial_id": trial_id,
        "epoch": chosen,
        "videos": len(rows),
        "acc": 100.0 * float(rows["correct"].mean()),
        "classes": classes,
        "matrix": matrix,
        "per_class": per_class.sort_values("acc", kind="stable"),
        "confused_pairs": [
            {"true": str(true), "pred": str(pred), "videos": int(count)}
            for (true, pred), count in top.items()
        ],
    }
