"""The predictions table of real searches, and what `egotune results` reads from it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import tiny_config_values
from tests.tables import assert_every_row_once
from tests.tuner.test_results import assert_real_png
from tuner import results
from tuner.cli import main
from tuner.spaces import parse_space
from tuner.tune.search import SearchOptions, run_search

TINY = {k: v for k, v in tiny_config_values().items() if k not in ("stage1", "device")}


def search(root: Path, storage: Path, name: str, doc: dict) -> Path:
    options = SearchOptions(data=root, storage=storage, name=name, verbose=0, argv=["test"])
    outcome = run_search(parse_space(doc, source=f"{name}.yaml", name=name), options)
    assert outcome.num_errors == 0
    assert_every_row_once(outcome.experiment_dir)
    return outcome.experiment_dir


@pytest.fixture(scope="module")
def grid(module_tmp, synthetic_root, local_ray) -> results.Experiment:
    doc = {
        "fixed": {**TINY, "model": "ego_rnn", "stage": 1, "epochs": 3},
        "grid": {"lr": [1e-2, 1e-4]},
        "scheduler": {"algorithm": "grid"},
        "resources": {"cpus": 1, "gpus": 0},
    }
    storage = module_tmp
    return results.load_experiment(search(synthetic_root, storage, "grid", doc))


def test_every_evaluated_epoch_has_one_row_per_validation_video(grid):
    predictions, epochs = grid.predictions, grid.epochs
    videos = sorted(predictions["video"].unique())
    assert videos and all(v.startswith("S2/") for v in videos)
    assert len(predictions) == len(epochs) * len(videos)
    assert not predictions.duplicated(["trial_id", "epoch", "video"]).any()
    accuracy = predictions.groupby(["trial_id", "epoch"])["correct"].mean() * 100
    recorded = epochs.set_index(["trial_id", "epoch"])["val_acc"]
    pd.testing.assert_series_equal(accuracy, recorded, check_names=False, atol=1e-9)
    assert (predictions["top_classes"].map(len) == predictions["top_probs"].map(len)).all()
    assert ((predictions["p_true"] >= 0) & (predictions["p_true"] <= 1)).all()


def test_compare_of_two_real_trials_agrees_with_a_count_from_the_table(grid, capsys):
    first, second = sorted(grid.trials["trial_id"])
    assert main(["results", "compare", str(grid.path), first, second, "--json"]) == 0
    test = json.loads(capsys.readouterr().out)
    best = grid.trials.set_index("trial_id")["best_epoch"]
    rows = grid.predictions
    picked = {
        t: rows[(rows["trial_id"] == t) & (rows["epoch"] == best[t])].set_index("video")
        for t in (first, second)
    }
    a, b = picked[first]["correct"], picked[second]["correct"].loc[picked[first].index]
    assert test["only_first_right"] == int((a & ~b).sum())
    assert test["only_second_right"] == int((~a & b).sum())
    assert test["videos"] == len(a)


def test_confusion_and_cam_strips_of_a_real_trial(grid, tmp_path, capsys):
    trial = str(grid.trials.sort_values("best_val_acc").iloc[-1]["trial_id"])
    out = tmp_path / "confusion.png"
    assert main(["results", "confusion", str(grid.path), trial, "--out", str(out)]) == 0
    assert "most confused" in capsys.readouterr().out or grid.trials["best_val_acc"].max() == 100
    assert_real_png(out, (500, 500))
    cams = tmp_path / "cams"
    argv = ["results", "cam", str(grid.path), trial, "--count", "2", "--out", str(cams), "--json"]
    assert main(argv) == 0
    written = [Path(p) for p in json.loads(capsys.readouterr().out)["out"]]
    assert len(written) == 2
    for path in written:
        assert_real_png(path, (400, 150))


@pytest.mark.slow
def test_a_leave_one_user_out_space_runs_each_configuration_on_four_folds(
    synthetic_root, tmp_path, local_ray, capsys
):
    doc = {
        "fixed": {**TINY, "model": "ego_rnn", "stage": 1, "epochs": 1, "lr": 1e-3},
        "folds": {"leave_one_user_out": ["S1", "S2", "S3", "S4"]},
        "scheduler": {"algorithm": "grid"},
        "resources": {"cpus": 1, "gpus": 0},
    }
    space = parse_space(doc, source="loocv.yaml", name="loocv")
    assert len(space.expand()) == 4
    experiment = search(synthetic_root, tmp_path, "loocv", doc)
    trials = results.load_experiment(experiment).trials
    assert sorted(json.loads(v)[0] for v in trials["val_users"]) == ["S1", "S2", "S3", "S4"]
    for _, trial in trials.iterrows():
        assert json.loads(trial["val_users"])[0] not in json.loads(trial["train_users"])
    predictions = results.read_predictions(experiment)
    by_trial = predictions.groupby("trial_id")["user"].unique()
    assert all(len(users) == 1 for users in by_trial)  # each fold validates on its own user
    assert main(["results", "pivot", str(experiment), "--rows", "lr"]) == 0
    assert " ± " in capsys.readouterr().out  # mean ± std over the four folds
    assert main(["results", "folds", str(experiment), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert len(summary) == 1 and summary[0]["n"] == 4
