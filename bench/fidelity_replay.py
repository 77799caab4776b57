"""Fidelity schedules by replay: what ``egotune bench replay_efficiency --fidelity`` measures.

The two-fidelity fixture (bench/fixtures/README.md) records the same grid twice, at full size and
on cheaper clips, with per-video predictions. A fidelity schedule is replayed on the stitched
curves (:func:`tuner.tune.replay.stitch_fidelities`): ASHA compares the trials on their cheap
epochs at the first rung, and every trial it promotes reports its full-size epochs from then on.
Beside it, in the same run and over the same seeds, epoch-only ASHA at ``egotune search``'s
defaults and Optuna+ASHA replay the full-size recording.

Each replayed search is scored on two things:

* **cost**: counted FLOPs (:mod:`tuner.training.cost`) of the epochs it received, each shared
  epoch once for the searches that share prefixes (grid and ASHA: the recorded ``computed_by``
  says which epochs a search with sharing computes once) and every epoch for Optuna, which does
  not share. The yardstick is the full-size grid with prefix sharing (what the fixture trained).
* **what it found**: the trial with the best metric among the full-size epochs it received, and
  whether the validation videos can tell that trial (at that epoch) from the grid's best:
  an exact McNemar test on their per-video outcomes, p >= 0.05 being within the noise band.

The goal: the fidelity schedule within the band in at least 8 of 10 seeds, at no more than 25 % of
the FLOPs of the full grid with sharing.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tuner.tune.replay import RecordedCurves, ReplayOutcome

__all__ = ["EpochCosts", "FidelityScore", "epoch_costs", "score", "summarize_scores"]

LEVEL = 0.95
GOAL_FRACTION, GOAL_SEEDS = 0.25, 8


@dataclass(frozen=True)
class EpochCosts:
    """Counted FLOPs of one epoch of each recorded experiment (by experiment name)."""

    per_epoch: dict[str, float]
    how: str
    """Where the figures come from: the recorded ``flops`` column or a count of the config."""


def epoch_costs(experiments: Sequence[Any], train_clips: int) -> EpochCosts:
    """Per experiment, the FLOPs of one epoch: the median of its recorded ``flops`` column, or,
    for recordings from before that column, a count of its configuration on ``train_clips``
    training clips and as many validation clips and classes as its predictions hold."""
    from tuner.results import hyperparameter_columns
    from tuner.training.config import SCHEDULE_KEYS, TrainConfig
    from tuner.training.cost import epoch_flops

    per_epoch, how = {}, []
    for experiment in experiments:
        epochs = experiment.epochs
        if "flops" in epochs.columns and epochs["flops"].notna().all():
            per_epoch[experiment.name] = float(epochs["flops"].median())
            how.append(f"{experiment.name}: recorded flops")
            continue
        row = experiment.trials.iloc[0]
        names = set(TrainConfig.keys()) - set(SCHEDULE_KEYS)  # a count does not depend on these
        values = {
            k: row[k].item() if hasattr(row[k], "item") else row[k]
            for k in hyperparameter_columns(experiment.trials)
            if k.split(".")[0] in names and not pd.isna(row[k])
        }
        config = TrainConfig.from_trial(values)
        predictions = experiment.predictions
        videos = int(predictions["video"].nunique())
        classes = int(predictions["true_class"].nunique())
        per_epoch[experiment.name] = epoch_flops(config, classes, train_clips, videos)
        how.append(
            f"{experiment.name}: counted at {config.frames} frames, {config.crop_size} px, "
            f"{train_clips} training and {videos} validation clips"
        )
    return EpochCosts(per_epoch, "; ".join(how))


@dataclass(frozen=True)
class FidelityScore:
    """One replayed search, scored."""

    algorithm: str
    seed: int
    flops: float
    fraction: float
    """``flops`` over the FLOPs of the full-size grid with prefix sharing."""
    found: str | None
    """Recorded trial id of the best full-size epoch the search received."""
    found_epoch: int | None
    found_value: float | None
    p_value: float | None
    """Exact McNemar of ``found`` (at ``found_epoch``) against the grid's best."""

    @property
    def within_band(self) -> bool:
        return self.p_value is not None and self.p_value >= 1 - LEVEL

    @property
    def meets_goal(self) -> bool:
        return self.within_band and self.fraction <= GOAL_FRACTION


def score(
    outcome: ReplayOutcome,
    curves: RecordedCurves,
    costs: EpochCosts,
    full: Any,
    grid_flops: float,
    *,
    shares: bool,
) -> FidelityScore:
    """Cost and find of ``outcome`` (a replay of ``curves``); ``full``: the full-size
    experiment (its predictions decide the band)."""
    from tuner.results import compare_trials, outcomes, significance_vs_best

    positions = {
        trial_id: {row[0]: i for i, row in enumerate(curve)}
        for trial_id, curve in curves.curves.items()
    }
    spent, seen = 0.0, set()
    best: tuple[float, str, int] | None = None
    for trial_id, epoch, value in outcome.reported:
        i = positions[trial_id][epoch]
        source = curves.fidelities[trial_id][i]
        unit = curves.units[trial_id][i] if shares and curves.units else None
        if unit is None or unit not in seen:
            spent += costs.per_epoch[source]
            if unit is not None:
                seen.add(unit)
        if source == full.name and (best is None or value > best[0]):
            best = (value, trial_id, epoch)
    p_value = None
    if best is not None:
        grid_best = significance_vs_best(full).query("best")["trial_id"].iloc[0]
        test = compare_trials(
            outcomes(full, grid_best), outcomes(full, best[1], best[2]), resamples=0
        )
        p_value = 1.0 if test["acc_second"] >= test["acc_first"] else test["p_value"]
    return FidelityScore(
        algorithm=outcome.algorithm,
        seed=outcome.seed,
        flops=spent,
        fraction=spent / grid_flops,
        found=best[1] if best else None,
        found_epoch=best[2] if best else None,
        found_value=best[0] if best else None,
        p_value=p_value,
    )


def summarize_scores(scores: Sequence[FidelityScore]) -> dict[str, Any]:
    fractions = [s.fraction for s in scores]
    return {
        "seeds": len(scores),
        "within_band": sum(s.within_band for s in scores),
        "within_budget": sum(s.fraction <= GOAL_FRACTION for s in scores),
        "meets_goal": sum(s.meets_goal for s in scores),
        "median_fraction": statistics.median(fractions),
        "max_fraction": max(fractions),
        "min_p": min((s.p_value for s in scores if s.p_value is not None), default=None),
    }
