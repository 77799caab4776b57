"""Where the statistics of the predictions table enter the pages.

The trial table shows a 95 % interval next to each best accuracy, the pivot heatmap marks the
cells not distinguishable from the best, the trial page shows the confusion matrix, the per-class
accuracy and the CAM strips, and the compare page a paired test. All of them come from the
per-video predictions of a trial; :class:`Statistics` is the one place that asks ``tuner.results``
for them. Where an experiment has no predictions (written before ``predictions.parquet``
existed) a method answers ``None`` and the page says plainly that the numbers are not
available: it never shows numbers of its own making.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tuner import results

__all__ = ["NOT_AVAILABLE", "Statistics", "TrialStatistics"]

NOT_AVAILABLE = (
    "not available without the per-clip predictions of the trials (predictions.parquet/), "
    "which this experiment does not have"
)


@dataclass(frozen=True)
class TrialStatistics:
    """What the trial page shows of one trial's predictions."""

    classes: list[str]
    confusion: list[list[int]]
    """``confusion[true][predicted]``: validation clips, in the order of ``classes``."""
    per_class_accuracy: list[float | None]
    """Percent of each class's validation clips predicted right, in the order of ``classes``."""
    cam_strips: list[Path] = field(default_factory=list)
    """PNG files of the trial's class-activation-map strips, inside the experiment folder."""


class Statistics:
    """The statistics the pages show, from ``tuner.results``; ``None`` where it has none (an
    experiment written before ``predictions.parquet`` existed, a trial without predictions)."""

    def intervals(self, experiment: results.Experiment) -> pd.DataFrame | None:
        """Columns ``low`` and ``high`` (percent), the 95 % Wilson interval of the accuracy at
        the selected epoch over the validation videos, indexed by ``trial_id``."""
        if experiment.predictions.empty:
            return None
        table = results.trial_accuracies(experiment)
        if table.empty:
            return None
        shown = table.set_index("trial_id")[["ci_low", "ci_high"]].dropna()
        return shown.rename(columns={"ci_low": "low", "ci_high": "high"})

    def pivot_marks(
        self,
        experiment: results.Experiment,
        rows: Sequence[str],
        cols: Sequence[str],
        agg: str,
    ) -> pd.DataFrame | None:
        """Booleans laid out like ``results.pivot_table(trials, rows, cols, agg=agg)``: ``True``
        where no trial of the cell is distinguishable from the best trial (paired tests on the
        same videos, Holm-corrected)."""
        if experiment.predictions.empty:
            return None
        try:
            return results.pivot_marks(experiment, rows, cols)
        except ValueError:
            return None

    def trial(self, experiment: results.Experiment, trial_id: str) -> TrialStatistics | None:
        """Confusion matrix and per-class accuracy at the selected epoch, and the CAM strips
        ``egotune results cam`` wrote into ``<experiment>/cam/<trial_id>/``."""
        try:
            found = results.confusion(experiment, trial_id)
        except ValueError:
            return None
        classes = [str(c) for c in found["classes"]]
        per_class = found["per_class"]["acc"]
        accuracy = [None if c not in per_class.index else float(per_class.loc[c]) for c in classes]
        strips_dir = experiment.path / results.CAM_DIR / trial_id
        strips = sorted(strips_dir.glob("*.png")) if strips_dir.is_dir() else []
        return TrialStatistics(
            classes=classes,
            confusion=[[int(v) for v in row] for row in found["matrix"].to_numpy().tolist()],
            per_class_accuracy=accuracy,
            cam_strips=strips,
        )

    def paired_test(
        self, experiment: results.Experiment, first: str, second: str
    ) -> dict[str, Any] | None:
        """The paired test of two trials on the same validation videos, as labelled JSON-ready
        values in display order."""
        try:
            test = results.compare_trials(
                results.outcomes(experiment, first), results.outcomes(experiment, second)
            )
        except ValueError:
            return None
        return {
            "test": "exact McNemar on the discordant videos",
            "videos": test["videos"],
            f"accuracy {first} (%)": round(test["acc_first"], 2),
            f"accuracy {second} (%)": round(test["acc_second"], 2),
            "difference (points)": round(test["difference"], 2),
            "95 % bootstrap interval": f"[{test['ci_low']:+.2f}, {test['ci_high']:+.2f}]",
            f"only {first} right": test["only_first_right"],
            f"only {second} right": test["only_second_right"],
            "p-value": round(test["p_value"], 4),
        }
