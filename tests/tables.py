"""What every search's tables must hold, whatever ran at once: each row once.

:func:`assert_every_row_once` is called by every test that runs a search."""

from __future__ import annotations

from pathlib import Path

from tuner.results import read_epochs, read_predictions, read_trials


def assert_every_row_once(experiment: Path, *, trials: int | None = None) -> None:
    """Every trial of ``experiment`` that ran holds epochs ``1 .. epochs_run`` exactly once, no
    epoch row belongs to an unknown trial, and every prediction group (trial, epoch) is there
    once, for every epoch its trial computed, with one row per validation video."""
    table, epochs = read_trials(experiment), read_epochs(experiment)
    assert table["trial_id"].is_unique, "a trial listed twice"
    if trials is not None:
        assert len(table) == trials, f"{len(table)} trials, expected {trials}"
    assert set(epochs["trial_id"]) <= set(table["trial_id"]), "epoch rows of an unknown trial"
    assert not epochs.duplicated(["trial_id", "epoch"]).any(), "an epoch row twice"
    runs = table.set_index("trial_id")["epochs_run"]
    for trial_id, rows in epochs.groupby("trial_id"):
        done = sorted(int(e) for e in rows["epoch"])
        assert done == list(range(1, done[-1] + 1)), f"{trial_id} holds epochs {done}"
        assert int(runs[trial_id]) == done[-1], f"{trial_id}: epochs_run {runs[trial_id]}"
    predictions = read_predictions(experiment)
    if predictions.empty:
        return
    assert not predictions.duplicated(["trial_id", "epoch", "video"]).any(), "a prediction twice"
    groups = predictions.groupby(["trial_id", "epoch"]).size()
    assert groups.nunique() == 1, f"prediction groups of sizes {sorted(set(groups))}"
    computed = epochs["computed_by"].isna() | (epochs["computed_by"] == epochs["trial_id"])
    expected = set(
        zip(epochs.loc[computed, "trial_id"], epochs.loc[computed, "epoch"], strict=True)
    )
    assert set(groups.index) == expected, "prediction groups differ from the computed epochs"
