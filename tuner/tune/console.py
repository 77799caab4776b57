"""The live console of a search: Tune's classic ``CLIReporter`` with egotune's columns."""

from __future__ import annotations

import os
from typing import Any

from tuner.spaces import SearchSpace

__all__ = ["REPORT_EVERY_S", "build_progress_reporter", "select_classic_console"]


REPORT_EVERY_S = 20
"""Seconds between two tables of the live console (and one when the search ends)."""


def select_classic_console() -> None:
    """Tune's classic console, the one that prints a ``CLIReporter``'s table: Tune's newer console
    (``RAY_AIR_NEW_OUTPUT`` unset) ignores the reporter, with a warning, and infers its own
    columns. A restored Tuner brings back the reporter it was built with but not this setting, so
    a resumed search selects it too. An environment that chose a console keeps it."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def build_progress_reporter(space: SearchSpace | None, *, every_s: float = REPORT_EVERY_S) -> Any:
    """Tune's ``CLIReporter`` for the live console of a search of ``space`` (``None``: a single
    run, such as a prerequisite, optimising ``val_acc``).

    One table every ``every_s`` seconds: the varying hyperparameters, the epoch, the optimised
    metric, the best validation accuracy so far and the training loss, best trials first, under
    Tune's line naming the current best trial (and, with ASHA, the rung cut-offs). The reporter
    belongs to Tune's classic console, which this selects (``RAY_AIR_NEW_OUTPUT=0``, Tune's own
    switch) unless the environment chose one already; Tune's newer console infers its columns
    and ignores a reporter.
    """
    from ray import tune

    select_classic_console()
    metric, mode = (space.scheduler.metric, space.scheduler.mode) if space else ("val_acc", "max")
    columns = {"epoch": "epoch", metric: metric, "best_val_acc": "best_val_acc"}
    columns.setdefault("train_loss", "train_loss")
    # Rank by the best accuracy so far rather than the last epoch's. Grid and random searches
    # give Tune the metric themselves (build_tune_config), which ranks by it: Tune refuses it
    # twice, so the reporter then takes Tune's.
    carried = space is None or space.scheduler.uses_asha or space.scheduler.uses_optuna
    ranked = "best_val_acc" if metric == "val_acc" else metric
    return tune.CLIReporter(
        metric_columns=columns,
        parameter_columns=space.varying_keys if space else ["model", "stage"],
        max_report_frequency=int(every_s),
        max_column_length=14,
        metric=ranked if carried else None,
        mode=mode if carried else None,
        sort_by_metric=True,
    )
