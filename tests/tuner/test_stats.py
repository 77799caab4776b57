"""Intervals, paired tests and significance marks on hand-built predictions with known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.tuner.test_results import assert_real_png
from tuner import results
from tuner.cli import main
from tuner.results import EpochPartWriter, PredictionPartWriter, TrialsTableWriter

VIDEOS = [f"S2/c{i % 4}/{i}" for i in range(40)]
CLASSES = ["c0", "c1", "c2", "c3"]


def predictions_of(correct: list[bool]) -> dict[str, list]:
    """Predictions of the 40 videos, right where ``correct`` says (wrong ones predict the next
    class)."""
    true = [v.split("/")[1] for v in VIDEOS]
    pred = [
        t if ok else CLASSES[(CLASSES.index(t) + 1) % 4]
        for t, ok in zip(true, correct, strict=True)
    ]
    top = [[p, *(c for c in CLASSES if c != p)] for p in pred]
    return {
        "video": VIDEOS,
        "user": ["S2"] * len(VIDEOS),
        "true_class": true,
        "pred_class": pred,
        "p_true": [0.9 if ok else 0.1 for ok in correct],
        "top_classes": top,
        "top_probs": [[0.7, 0.1, 0.1, 0.1]] * len(VIDEOS),
    }


def write_experiment(folder: Path, outcomes: dict[str, tuple[dict, list[bool]]]) -> Path:
    """Trials with one epoch each: ``trial_id -> (hyperparameters, per-video correctness)``."""
    trials = TrialsTableWriter(folder)
    predictions = PredictionPartWriter(folder)
    with EpochPartWriter(folder, flush_interval_s=0) as epochs:
        for trial_id, (params, correct) in outcomes.items():
            acc = 100.0 * sum(correct) / len(correct)
            trials.update(
                trial_id,
                {"status": "TERMINATED", **params, "best_val_acc": acc, "best_epoch": 1},
            )
            epochs.add({"trial_id": trial_id, "epoch": 1, "val_acc": acc, "stage": 1})
            predictions.add(trial_id, 1, predictions_of(correct))
    predictions.flush()
    trials.write()
    return folder


def pattern(right: int, start: int = 0) -> list[bool]:
    """40 videos, ``right`` of them right, the run of right ones starting at ``start``."""
    return [(i - start) % 40 < right for i in range(40)]


@pytest.fixture
def grid(tmp_path) -> results.Experiment:
    """lr x gamma: the best (36/40) and one within noise (34/40, 2 discordant-ish) in one row,
    the others far below (10/40)."""
    cells = {
        "best": ({"lr": 1e-4, "gamma": 0.1}, pattern(36)),
        "near": ({"lr": 1e-4, "gamma": 0.2}, pattern(34)),
        "far1": ({"lr": 1e-3, "gamma": 0.1}, pattern(10)),
        "far2": ({"lr": 1e-3, "gamma": 0.2}, pattern(10, start=20)),
    }
    write_experiment(tmp_path / "grid", cells)
    return results.load_experiment("grid", tmp_path)


def test_wilson_interval_is_the_textbook_one():
    low, high = results.wilson_interval(81, 263)  # Newcombe (1998), Table I
    assert (round(low / 100, 4), round(high / 100, 4)) == (0.2553, 0.3662)
    z = 1.959963984540054
    p, n = 81 / 116, 116  # the closed form, on 116 videos
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert results.wilson_interval(81, 116) == pytest.approx(
        (100 * (centre - half), 100 * (centre + half))
    )


@pytest.mark.parametrize(("first_only", "second_only", "p_value"), [
    (9, 1, 22 / 1024),  # 2 * P(X <= 1), X ~ Bin(10, 1/2)
    (5, 5, 1.0),
    (12, 0, 2 / 4096),
])  # fmt: skip
def test_compare_gives_the_exact_mcnemar_p_value_of_the_discordant_counts(
    first_only, second_only, p_value
):
    both = 20
    a = [True] * both + [True] * first_only + [False] * second_only + [False] * 3
    b = [True] * both + [False] * first_only + [True] * second_only + [False] * 3
    index = [f"v{i}" for i in range(len(a))]
    test = results.compare_trials(pd.Series(a, index=index), pd.Series(b, index=index))
    assert test["p_value"] == pytest.approx(p_value)
    assert (test["only_first_right"], test["only_second_right"]) == (first_only, second_only)
    assert test["difference"] == pytest.approx(100 * (first_only - second_only) / len(a))
    assert test["ci_low"] <= test["difference"] <= test["ci_high"]


def test_the_bootstrap_interval_agrees_with_an_independent_resampling():
    rng = np.random.default_rng(3)
    a, b = rng.random(116) < 0.7, rng.random(116) < 0.6
    index = [f"v{i}" for i in range(116)]
    test = results.compare_trials(pd.Series(a, index=index), pd.Series(b, index=index))
    draws = np.random.default_rng(11).integers(0, 116, size=(20000, 116))
    differences = 100 * (a[draws].mean(axis=1) - b[draws].mean(axis=1))
    low, high = np.percentile(differences, [2.5, 97.5])
    assert test["ci_low"] == pytest.approx(low, abs=0.9)  # one video is 0.86 points
    assert test["ci_high"] == pytest.approx(high, abs=0.9)


def test_pivot_significance_marks_the_cells_within_noise_of_the_best(grid, capsys):
    marks = results.pivot_marks(grid, ["lr"], ["gamma"])
    assert marks.to_dict() == {0.1: {1e-4: True, 1e-3: False}, 0.2: {1e-4: True, 1e-3: False}}
    tests = results.significance_vs_best(grid).set_index("trial_id")
    assert tests.loc["best", "best"] and not tests.loc["near", "distinguishable"]
    assert tests.loc[["far1", "far2"], "distinguishable"].all()
    assert (tests.loc[["far1", "far2"], "p_holm"] >= tests.loc[["far1", "far2"], "p_value"]).all()
    argv = ["results", "pivot", str(grid.path), "--rows", "lr", "--cols", "gamma"]
    assert main([*argv, "--significance", "--json"]) == 0
    cells = {row["lr"]: row["not_distinguishable"] for row in json.loads(capsys.readouterr().out)}
    assert cells == {1e-4: {"0.1": True, "0.2": True}, 1e-3: {"0.1": False, "0.2": False}}
    assert main([*argv, "--significance"]) == 0
    text = capsys.readouterr().out
    assert "90.00 =" in text and "85.00 =" in text and "25.00 =" not in text


def test_pivot_heatmap_is_drawn_with_the_marks(grid, tmp_path, capsys):
    out = tmp_path / "heatmap.png"
    argv = ["results", "pivot", str(grid.path), "--rows", "lr", "--cols", "gamma"]
    assert main([*argv, "--significance", "--out", str(out)]) == 0
    assert_real_png(out, (500, 300))


def test_accuracy_gives_each_trial_its_interval_and_last_epoch_view(grid, capsys):
    table = results.trial_accuracies(grid).set_index("trial_id")
    assert table.loc["best", "acc"] == 90.0 and table.loc["best", "videos"] == 40
    expected = results.wilson_interval(36, 40)
    assert (table.loc["best", "ci_low"], table.loc["best", "ci_high"]) == pytest.approx(expected)
    assert main(["results", "accuracy", str(grid.path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["trial_id"] == "best" and rows[0]["last_acc"] == 90.0


def test_compare_cli_counts_the_same_pairs_as_the_predictions_table(grid, capsys):
    assert main(["results", "compare", str(grid.path), "best", "near", "--json"]) == 0
    test = json.loads(capsys.readouterr().out)
    rows = grid.predictions.pivot(index="video", columns="trial_id", values="correct")
    assert test["only_first_right"] == int((rows["best"] & ~rows["near"]).sum()) == 2
    assert test["only_second_right"] == int((~rows["best"] & rows["near"]).sum()) == 0
    assert test["p_value"] == pytest.approx(0.5)


def test_confusion_names_the_classes_and_the_most_confused_pairs(grid, tmp_path, capsys):
    out = tmp_path / "confusion.png"
    assert main(["results", "confusion", str(grid.path), "far1", "--out", str(out), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["classes"] == CLASSES and found["acc"] == 25.0
    matrix = np.array(found["matrix"])
    assert matrix.sum() == 40 and np.trace(matrix) == 10
    assert found["confused_pairs"][0]["pred"] != found["confused_pairs"][0]["true"]
    assert_real_png(out, (500, 500))


def test_an_experiment_without_predictions_says_so(tmp_path, capsys):
    folder = tmp_path / "old"
    table = TrialsTableWriter(folder)
    table.update("t1", {"status": "TERMINATED", "best_val_acc": 50.0, "best_epoch": 1})
    table.write()
    with EpochPartWriter(folder, flush_interval_s=0) as epochs:
        epochs.add({"trial_id": "t1", "epoch": 1, "val_acc": 50.0})
    assert main(["results", "confusion", str(folder), "t1", "--out", str(tmp_path / "c.png")]) == 2
    assert "no predictions" in capsys.readouterr().err
    assert main(["results", "confusion", str(folder), "t9", "--out", str(tmp_path / "c.png")]) == 2
    assert "no trial 't9'" in capsys.readouterr().err


def test_seed_intervals_are_t_intervals_of_the_mean():
    groups = pd.DataFrame({"mean": [70.0, 60.0], "std": [2.0, np.nan], "n": [3, 1]})
    shown = results.seed_intervals(groups)
    half = 4.302652729911275 * 2.0 / math.sqrt(3)  # t(0.975, 2)
    assert (shown.loc[0, "ci_low"], shown.loc[0, "ci_high"]) == pytest.approx(
        (70 - half, 70 + half)
    )
    assert math.isnan(shown.loc[1, "ci_low"])
