"""Accuracy against cost: the Pareto front of a search and the cheapest configuration the
validation videos cannot tell from the best.

A trial's cost is what the trials table records for it (``tuner.tune.callbacks``): ``flops``, the
counted FLOPs of its epochs (``tuner.training.cost``: one scale for every clip length and crop),
and ``gpu_seconds``, its epochs' measured seconds times the GPUs it held. Both count every epoch
row of the trial, the ones prefix sharing computed once for several trials included: the cost of
training that configuration alone, as it ran (an ASHA-stopped trial costs the epochs it ran).

* :func:`pareto_front`: every trial with its accuracy (``best_val_acc``) and cost, and whether no
  other trial is at least as accurate for at most its cost, strictly better in one of the two;
* :func:`recommend`: among the finished trials whose accuracy is not significantly below the
  best's (exact McNemar tests on the per-video outcomes, Holm-corrected over the comparisons:
  :func:`tuner.results.significance_vs_best`), the cheapest.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from tuner.results._load import Experiment, varying_columns
from tuner.results._stats import LEVEL, compare_trials, outcomes, significance_vs_best

__all__ = [
    "COSTS",
    "cost_label",
    "cost_unit",
    "format_cost",
    "front_mask",
    "pareto_front",
    "recommend",
    "trial_costs",
]

COSTS = ("flops", "gpu_seconds")
"""The trials table's cost columns."""
_LABELS = {"flops": "counted FLOPs", "gpu_seconds": "GPU-seconds"}


_PREFIXES = ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1.0, ""))


def cost_label(cost: str) -> str:
    return _LABELS[cost]


def cost_unit(cost: str, largest: float) -> tuple[float, str]:
    """``(scale, unit)`` to show costs up to ``largest`` in: FLOPs with an SI prefix (``TFLOP``),
    seconds as they are."""
    if cost != "flops":
        return 1.0, "GPU-s"
    for scale, prefix in _PREFIXES:
        if largest >= scale:
            return scale, f"{prefix}FLOP"
    return 1.0, "FLOP"


def format_cost(cost: str, value: Any) -> str:
    """``12.3 TFLOP``, ``840 GPU-s``, or ``-`` for a missing value."""
    if value is None or pd.isna(value):
        return "-"
    scale, unit = cost_unit(cost, float(value))
    return f"{float(value) / scale:,.{1 if cost == 'flops' else 0}f} {unit}"


def trial_costs(experiment: Experiment, cost: str = "flops") -> pd.DataFrame:
    """``trial_id``, ``status``, the varying hyperparameters, ``best_val_acc``, ``best_epoch``,
    ``epochs_run`` and ``cost`` of every trial (NaN where the table has no cost: searches from
    before costs were counted, and CPU trials for ``gpu_seconds``)."""
    if cost not in COSTS:
        raise ValueError(f"--cost: expected one of {', '.join(COSTS)}, got {cost!r}")
    trials = experiment.trials
    shown = varying_columns(trials) if not trials.empty else []
    columns = ["trial_id", "status", *shown, "best_val_acc", "best_epoch", "epochs_run"]
    columns.append("early_stopped")
    frame = trials[[c for c in columns if c in trials.columns]].copy()
    values = trials[cost] if cost in trials.columns else pd.Series(np.nan, index=trials.index)
    frame["cost"] = pd.to_numeric(values, errors="coerce")
    if cost == "gpu_seconds":  # a CPU trial's zero is no cost figure
        frame.loc[frame["cost"] <= 0, "cost"] = np.nan
    return frame.reset_index(drop=True)


def pareto_front(
    experiment: Experiment, cost: str = "flops", value: str = "best_val_acc"
) -> pd.DataFrame:
    """:func:`trial_costs` with ``on_front``: True for the trials no other trial dominates (at
    most its cost and at least its ``value``, strictly better in one). Trials without a cost or
    a value are never on the front. Sorted by cost, then by value (highest first)."""
    frame = trial_costs(experiment, cost)
    frame["on_front"] = front_mask(frame["cost"].to_numpy(float), frame[value].to_numpy(float))
    return frame.sort_values(
        ["cost", value], ascending=[True, False], na_position="last", kind="stable"
    ).reset_index(drop=True)


def front_mask(cost: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Non-dominated points of (``cost`` to lower, ``value`` to raise) in one sweep by cost:
    a point is on the front when its value is the highest at its cost and above every cheaper
    point's (equal points are all on it)."""
    mask = np.zeros(len(cost), dtype=bool)
    known = ~(np.isnan(cost) | np.isnan(value))
    top = -math.inf
    for level in np.unique(cost[known]):  # ascending
        here = known & (cost == level)
        best = value[here].max()
        if best > top:
            mask |= here & (value == best)
            top = best
    return mask


def recommend(experiment: Experiment, cost: str = "flops", *, level: float = LEVEL) -> dict:
    """The cheapest finished trial not significantly below the best one.

    Trials a scheduler stopped early are not candidates: their accuracy is that of a shorter (or,
    under a fidelity schedule, a cheaper-clip) run than the configuration's, and their cost is
    not what the configuration costs. ``stopped`` counts them.

    Returns ``best`` and ``recommended`` (trial rows: ``trial_id``, the varying
    hyperparameters, ``acc`` at the selected epoch, ``cost``), ``p_value`` (exact McNemar of the
    two on the videos both predicted) and ``p_holm`` (Holm-corrected over every comparison with the
    best), the 2x2 counts (``only_best_right``, ``only_recommended_right``, ``videos``),
    ``tied`` (how many trials the tests cannot tell from the best, the best included), ``saving``
    (1 - recommended cost / best cost) and ``level``. Ties on cost go to the more accurate trial.
    """
    tests = significance_vs_best(experiment, level=level)
    costs = trial_costs(experiment, cost).set_index("trial_id")
    tests = tests[tests["trial_id"].isin(costs.index)].copy()
    tests["cost"] = costs.loc[tests["trial_id"], "cost"].to_numpy(float)
    best_row = tests[tests["best"]].iloc[0]
    stopped = set(costs.index[costs["early_stopped"].fillna(False).astype(bool)])
    tied = tests[~tests["distinguishable"].astype(bool)]
    priced = tied[tied["cost"].notna() & ~tied["trial_id"].isin(stopped)]
    if priced.empty:
        raise ValueError(
            f"{experiment.name}: no {cost_label(cost)} recorded for the trials (searches from "
            "before costs were counted have none; CPU trials have no GPU-seconds)"
        )
    chosen = priced.sort_values(["cost", "acc"], ascending=[True, False], kind="stable").iloc[0]
    pair = compare_trials(
        outcomes(experiment, str(best_row["trial_id"])),
        outcomes(experiment, str(chosen["trial_id"])),
        level=level,
        resamples=0,
    )
    shown = varying_columns(experiment.trials)

    def describe(row: pd.Series) -> dict[str, Any]:
        trial = costs.loc[row["trial_id"]]
        return {
            "trial_id": str(row["trial_id"]),
            **{k: _plain(trial[k]) for k in shown if k in trial.index},
            "acc": float(row["acc"]),
            "epoch": _plain(trial["best_epoch"]),
            "cost": _plain(row["cost"]),
        }

    best_cost, chosen_cost = float(best_row["cost"]), float(chosen["cost"])
    same = chosen["trial_id"] == best_row["trial_id"]
    return {
        "cost": cost,
        "level": level,
        "best": describe(best_row),
        "recommended": describe(chosen),
        "same_trial": bool(same),
        "p_value": math.nan if same else float(chosen["p_value"]),
        "p_holm": math.nan if same else float(chosen["p_holm"]),
        "videos": pair["videos"],
        "only_best_right": pair["only_first_right"],
        "only_recommended_right": pair["only_second_right"],
        "tied": len(tied),
        "stopped": len(stopped & set(tests["trial_id"])),
        "compared": len(tests),
        "saving": 1.0 - chosen_cost / best_cost if best_cost > 0 else math.nan,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value
