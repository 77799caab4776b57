"""Replays of recorded curves: loading, epochs to target, ASHA and `egotune replay` on Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner import cli
from tuner.errors import EgotuneError, UsageError
from tuner.results import (
    EpochPartWriter,
    TrialsTableWriter,
    read_epochs,
    write_experiment_metadata,
)
from tuner.tune.replay import (
    TRIAL_KEY,
    ReplaySettings,
    epochs_to_target,
    load_recorded,
    replay_search,
    summarize_trace,
)

EPOCHS = 6
FIXTURES = Path(__file__).resolve().parents[2] / "bench" / "fixtures"
FIXTURE = "fig10-synthetic"


def write_experiment(folder: Path, curves: dict[str, list[float]], configs: dict) -> Path:
    """An experiment folder written with the project's writers, as a search leaves it."""
    trials = TrialsTableWriter(folder)
    with EpochPartWriter(folder, flush_interval_s=3600) as epochs:
        for trial_id, values in curves.items():
            for epoch, value in enumerate(values, start=1):
                epochs.add({"trial_id": trial_id, "epoch": epoch, "val_acc": value, "seconds": 1.0})
            trials.update(trial_id, {"status": "TERMINATED", "seed": 0, **configs[trial_id]})
    trials.write()
    return folder


def grid_experiment(folder: Path) -> Path:
    """A 2 x 2 x 2 grid: only lr=1e-3 learns, best with gamma 0.5 and milestones [4]."""
    curves, configs = {}, {}
    for index, (lr, gamma, milestones) in enumerate(
        (lr, gamma, m) for lr in (1e-4, 1e-3) for gamma in (0.1, 0.5) for m in ([2], [4])
    ):
        slope = 8.0 if lr == 1e-3 else 1.0
        bonus = 5.0 if (gamma, milestones) == (0.5, [4]) and lr == 1e-3 else 0.0
        trial_id = f"t{index}"
        curves[trial_id] = [20 + slope * e + (bonus if e > 2 else 0) for e in range(1, EPOCHS + 1)]
        configs[trial_id] = {"lr": lr, "gamma": gamma, "milestones": milestones}
    return write_experiment(folder, curves, configs)


def test_epochs_to_target_counts_every_epoch_received_until_the_first_close_value() -> None:
    assert epochs_to_target([50, 60, 69.5, 71, 72], target=69.0) == 3
    assert epochs_to_target([50, 60], target=69.0) is None
    assert epochs_to_target([0.9, 0.5, 0.31], target=0.4, mode="min") == 3


def test_summary_fractions_are_of_the_recorded_epochs() -> None:
    outcome = summarize_trace(
        [10.0, 30.0, 70.0, 20.0],
        trials=2,
        target=69.0,
        mode="max",
        grid_epochs=40,
        algorithm="asha",
        seed=3,
    )
    assert (outcome.epochs, outcome.epochs_to_target, outcome.best) == (4, 3, 70.0)
    assert outcome.fraction_to_target == pytest.approx(3 / 40)
    assert outcome.fraction_consumed == pytest.approx(4 / 40)


def test_a_full_grid_is_searched_over_its_hyperparameter_values(tmp_path: Path) -> None:
    curves = load_recorded(grid_experiment(tmp_path / "grid"))
    assert curves.keys == ("gamma", "lr", "milestones") and curves.factorial
    assert curves.choices()["milestones"] == ["[2]", "[4]"]
    assert curves.total_epochs == 8 * EPOCHS and curves.max_epoch == EPOCHS
    assert curves.best == pytest.approx(20 + 8 * EPOCHS + 5)
    best = curves.trial_for({"lr": 1e-3, "gamma": 0.5, "milestones": "[4]"})
    assert max(value for _, value, _ in curves.curves[best]) == curves.best
    assert curves.trial_for({TRIAL_KEY: "t2"}) == "t2"


def test_rows_that_are_not_a_product_are_searched_by_trial_id(tmp_path: Path) -> None:
    folder = write_experiment(
        tmp_path / "points",
        {"a": [10.0, 20.0], "b": [15.0, 25.0], "c": [12.0, 22.0]},
        {
            "a": {"lr": 1e-4, "gamma": 0.1},
            "b": {"lr": 1e-3, "gamma": 0.5},
            "c": {"lr": 1e-3, "gamma": 0.1},
        },
    )
    assert not load_recorded(folder).factorial


def test_missing_experiment_and_empty_epochs_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(EgotuneError, match="no results in"):
        load_recorded("nope", storage=tmp_path)
    empty = tmp_path / "empty"  # a search killed before its first epoch
    write_experiment_metadata(
        empty, space_name="x", space_text="", overrides={}, dataset_fingerprint="", argv=[]
    )
    with pytest.raises(EgotuneError, match="has no epochs with val_acc"):
        load_recorded(empty)


def test_settings_are_checked_before_anything_runs() -> None:
    with pytest.raises(UsageError, match="--scheduler hyperband"):
        ReplaySettings("hyperband")
    with pytest.raises(UsageError, match="--reduction-factor 1"):
        ReplaySettings("asha", reduction_factor=1.0)


def test_asha_replay_stops_bad_trials_and_still_finds_the_best(local_ray, tmp_path: Path) -> None:
    curves = load_recorded(grid_experiment(tmp_path / "grid"))
    settings = ReplaySettings(
        "asha", seed=0, grace_period=1, reduction_factor=2, max_concurrent=1, time_scale=0.0
    )
    outcome = replay_search(curves, settings)
    assert outcome.trials == 8
    assert outcome.epochs < curves.total_epochs  # some trials stopped at a rung
    assert outcome.best == curves.best and outcome.epochs_to_target is not None


def test_asha_replay_of_the_fixture_reports_its_cost_against_the_grid(
    local_ray, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["replay", FIXTURE, "--storage", str(FIXTURES), "--scheduler", "asha", "--seeds", "1"]
    argv += ["--max-concurrent", "2"]
    assert cli.main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    epochs = read_epochs(FIXTURES / FIXTURE)
    assert report["trials"] == epochs["trial_id"].nunique() == 36
    assert report["grid_epochs"] == len(epochs)
    assert report["grid_best"] == epochs["val_acc"].max()
    assert report["searches_over"] == ["gamma", "lr", "milestones", "weight_decay"]
    (run,) = report["runs"]
    assert run["algorithm"] == "asha" and run["trials"] == 36
    assert run["epochs"] < report["grid_epochs"]  # ASHA stopped some trials
    assert run["best"] <= report["grid_best"]
    to_target = run["epochs_to_target"]
    expected = None if to_target is None else to_target / report["grid_epochs"]
    assert run["fraction_to_target"] == expected
