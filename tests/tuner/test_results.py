"""tuner.results on hand-built tables with known answers: seeds, pivot, plots, importance."""

from __future__ import annotations

import itertools
import json
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tuner import results
from tuner.errors import EgotuneError
from tuner.results import EpochPartWriter, TrialsTableWriter

LRS = (1e-4, 1e-3)
MILESTONES = ([30, 70], [40, 80])
GAMMAS = (0.1, 0.2)
SEED_OFFSETS = {0: -1.0, 1: 0.0, 2: 1.0}  # mean 0, sample std 1 over three seeds


def base_accuracy(lr: float, milestones: list[int], gamma: float) -> float:
    """The known mean over seeds of each configuration: lr matters most, gamma a little."""
    return 70.0 - 20.0 * (lr == 1e-3) + 2.0 * (milestones[0] == 40) + 0.5 * (gamma == 0.2)


def write_handmade(exp_dir: Path) -> pd.DataFrame:
    """A 2x2x2 grid with three seeds; each trial runs 3 stage-1 and 4 stage-2 epochs."""
    trials = TrialsTableWriter(exp_dir)
    rows = []
    with EpochPartWriter(exp_dir, flush_interval_s=0) as epochs:
        grid = itertools.product(LRS, MILESTONES, GAMMAS, SEED_OFFSETS.items())
        for index, (lr, milestones, gamma, (seed, offset)) in enumerate(grid):
            trial_id = f"t{index:02d}"
            best = base_accuracy(lr, milestones, gamma) + offset
            row = {"status": "TERMINATED", "lr": lr, "milestones": milestones, "gamma": gamma}
            row |= {"seed": seed, "best_val_acc": best, "best_epoch": 7, "epochs_run": 7}
            row |= {"init_checkpoint": f"/ckpt/stage1-{seed}", "checkpoint": f"/ckpt/{trial_id}"}
            trials.update(trial_id, row)
            rows.append({"trial_id": trial_id, **row})
            for epoch in range(1, 8):
                epochs.add(epoch_row(trial_id, epoch, lr, best))
            epochs.flush()
    trials.write()
    return pd.DataFrame(rows)


def epoch_row(trial_id: str, epoch: int, lr: float, best: float) -> dict:
    stage = 1 if epoch <= 3 else 2
    stage_epoch = epoch if stage == 1 else epoch - 3
    rate = 1e-3 if stage == 1 else (lr if stage_epoch <= 2 else lr * 0.1)
    return {
        "trial_id": trial_id,
        "epoch": epoch,
        "stage": stage,
        "stage_epoch": stage_epoch,
        "lr": rate,
        "train_acc": 10.0 * epoch,
        "val_acc": best - (7 - epoch),
        "train_loss": 2.0 / epoch,
        "val_loss": 2.5 / epoch,
    }


@pytest.fixture
def handmade(tmp_path) -> tuple[results.Experiment, pd.DataFrame]:
    rows = write_handmade(tmp_path / "grid")
    return results.load_experiment("grid", tmp_path), rows


def assert_real_png(path: Path, min_size: tuple[int, int] = (400, 300)) -> None:
    assert path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 10  # drawn on, not a blank canvas


def test_load_reads_every_table(handmade):
    experiment, rows = handmade
    assert len(experiment.trials) == len(rows) == 24
    assert len(experiment.epochs) == 24 * 7
    assert experiment.schema_version == 1
    assert experiment.metadata == {}
    assert experiment.hyperparameters == ["gamma", "lr", "milestones", "seed"]


def test_experiment_is_found_by_path_too(handmade, tmp_path):
    experiment, _ = handmade
    again = results.load_experiment(str(experiment.path), storage=tmp_path / "elsewhere")
    assert again.path == experiment.path


def test_unknown_experiment_names_the_folder(tmp_path):
    with pytest.raises(EgotuneError, match="nope"):
        results.load_experiment("nope", tmp_path)


def test_storage_defaults_to_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EGOTUNE_STORAGE", str(tmp_path))
    assert results.default_storage() == tmp_path
    monkeypatch.delenv("EGOTUNE_STORAGE")
    assert results.default_storage() == Path.home() / "egotune-results"


def test_seed_groups_give_mean_std_and_n(handmade):
    experiment, _ = handmade
    groups = results.group_seeds(experiment.trials)
    assert len(groups) == 8
    assert set(groups["n"]) == {3}
    assert groups["std"].to_numpy() == pytest.approx(np.ones(8))
    for _, group in groups.iterrows():
        expected = base_accuracy(group["lr"], json.loads(group["milestones"]), group["gamma"])
        assert group["mean"] == pytest.approx(expected)
        assert group["best"] == pytest.approx(expected + 1)
        assert sorted(group["seeds"]) == [0, 1, 2]
        assert group["epochs_run"] == 21
    assert groups["mean"].is_monotonic_decreasing


def test_checkpoint_paths_do_not_split_seed_groups(handmade):
    experiment, _ = handmade
    assert "init_checkpoint" not in results.group_seeds(experiment.trials).columns


def test_top_groups_by_default_and_ranks_single_trials_on_request(handmade):
    experiment, _ = handmade
    top = results.top_trials(experiment.trials, k=2)
    assert list(top["lr"]) == [1e-4, 1e-4]
    assert list(top["milestones"]) == ["[40, 80]", "[40, 80]"]
    assert list(top["gamma"]) == [0.2, 0.1]
    single = results.top_trials(experiment.trials, k=1, group=False)
    assert single.iloc[0]["best_val_acc"] == pytest.approx(72.5 + 1)
    assert single.iloc[0]["seed"] == 2


def test_pivot_lays_out_the_fig10_grid(handmade):
    experiment, _ = handmade
    table = results.pivot_table(experiment.trials, ["lr", "milestones"], ["gamma"])
    assert list(table.columns) == [0.1, 0.2]
    assert list(table.index) == [
        (1e-4, "[30, 70]"),
        (1e-4, "[40, 80]"),
        (1e-3, "[30, 70]"),
        (1e-3, "[40, 80]"),
    ]
    for (lr, milestones), row in table.iterrows():
        for gamma, cell in row.items():
            assert cell == pytest.approx(base_accuracy(lr, json.loads(milestones), gamma))


def test_pivot_max_takes_the_best_seed(handmade):
    experiment, _ = handmade
    table = results.pivot_table(experiment.trials, ["lr"], ["gamma"], agg="max")
    assert table.loc[1e-4, 0.2] == pytest.approx(72.5 + 1)


def test_pivot_keeps_missing_combinations_as_nan(handmade):
    experiment, _ = handmade
    trials = experiment.trials[
        ~((experiment.trials["lr"] == 1e-3) & (experiment.trials["gamma"] == 0.2))
    ]
    table = results.pivot_table(trials, ["lr"], ["gamma"])
    assert np.isnan(table.loc[1e-3, 0.2])
    assert not np.isnan(table.loc[1e-3, 0.1])


def test_pivot_refuses_an_unknown_column(handmade):
    experiment, _ = handmade
    with pytest.raises(ValueError, match="no column weight_decay"):
        results.pivot_table(experiment.trials, ["weight_decay"], ["gamma"])


def test_lr_phases_follow_the_schedule(handmade):
    experiment, _ = handmade
    run = experiment.epochs[experiment.epochs["trial_id"] == "t00"]
    assert results.lr_phases(run) == [(1, 3, 1e-3), (4, 5, 1e-4), (6, 7, pytest.approx(1e-5))]


def test_curves_png_shows_the_curves(handmade, tmp_path):
    experiment, _ = handmade
    chosen = results.select_trials(experiment, top=2)
    assert len(chosen) == 2
    path = results.plot_curves(experiment, chosen, tmp_path / "curves.png")
    assert_real_png(path, min_size=(1200, 800))


def test_curves_refuse_an_unknown_trial(handmade):
    experiment, _ = handmade
    with pytest.raises(ValueError, match="t99"):
        results.select_trials(experiment, ["t00", "t99"])


def test_importance_ranks_the_parameter_that_matters_first(handmade, tmp_path):
    experiment, _ = handmade
    importances = results.param_importances(experiment.trials)
    assert importances.index[0] == "lr"
    assert importances["lr"] > 0.5
    assert importances.sum() == pytest.approx(1.0)
    assert_real_png(results.plot_importances(importances, tmp_path / "imp.png"), (600, 200))


def test_importance_needs_a_varying_parameter(handmade):
    experiment, _ = handmade
    one = experiment.trials[(experiment.trials["lr"] == 1e-4)].assign(
        gamma=0.1, milestones="[30, 70]", seed=0
    )
    with pytest.raises(ValueError, match="varying"):
        results.param_importances(one)


def test_parallel_png(handmade, tmp_path):
    experiment, _ = handmade
    assert_real_png(results.plot_parallel(experiment, tmp_path / "par.png"), (800, 500))


def test_parallel_html_is_self_contained_with_a_line_per_trial(handmade, tmp_path):
    experiment, _ = handmade
    page = results.plot_parallel(experiment, tmp_path / "par.html").read_text()
    assert page.count("<polyline") == 24
    assert "<svg" in page and "t00" in page
    assert "src=" not in page and "href=" not in page


def test_compare_counts_the_epochs_each_consumed(handmade, tmp_path):
    experiment, _ = handmade
    early = tmp_path / "asha"
    trials = TrialsTableWriter(early)
    for index, (lr, seed) in enumerate(itertools.product(LRS, (0, 1))):
        row = {"status": "TERMINATED", "lr": lr, "seed": seed, "epochs_run": 2 + index}
        trials.update(f"a{index}", row | {"best_val_acc": 60.0 + index})
    trials.write()
    table = results.compare_experiments([experiment, results.load_experiment(early)])
    assert table.loc["epochs", "grid"] == 24 * 7
    assert table.loc["epochs", "asha"] == 2 + 3 + 4 + 5
    assert table.loc["best", "asha"] == 63.0
    assert table.loc["best_config_mean", "grid"] == pytest.approx(72.5)
    assert table.loc["best_config_std", "grid"] == pytest.approx(1.0)


def test_list_shows_each_experiment(handmade, tmp_path):
    (tmp_path / "_prerequisites").mkdir()
    table = results.list_experiments(tmp_path)
    assert list(table["experiment"]) == ["grid"]
    assert table.iloc[0]["status"] == {"TERMINATED": 24}
    assert table.iloc[0]["best"] == pytest.approx(73.5)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_round_trips(handmade, tmp_path, fmt):
    experiment, _ = handmade
    path = results.export_experiment(experiment, fmt, tmp_path / f"out.{fmt}")
    back = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    assert list(back["trial_id"]) == list(experiment.trials["trial_id"])
    assert back["best_val_acc"].to_numpy() == pytest.approx(experiment.trials["best_val_acc"])
    epochs = results.export_experiment(experiment, fmt, tmp_path / f"ep.{fmt}", epochs=True)
    assert len(pd.read_csv(epochs) if fmt == "csv" else pd.read_parquet(epochs)) == 24 * 7


def test_tables_without_a_schema_version_are_upgraded(tmp_path):
    """An early layout: no status or summary columns, epochs without stages or versioning."""
    exp = tmp_path / "old"
    (exp / "epochs.parquet").mkdir(parents=True)
    pd.DataFrame({"trial_id": ["a", "b"], "lr": [1e-3, 1e-4]}).to_parquet(exp / "trials.parquet")
    epochs = pd.DataFrame(
        {
            "trial_id": ["a", "a", "b", "b"],
            "epoch": [1, 2, 1, 2],
            "val_acc": [40.0, 55.0, 62.0, 58.0],
            "lr": [1e-3, 1e-3, 1e-4, 1e-4],
        }
    )
    epochs.to_parquet(exp / "epochs.parquet" / "part-000000-00000000.parquet")
    experiment = results.load_experiment(exp)
    assert experiment.schema_version == 0
    trials = experiment.trials.set_index("trial_id")
    assert trials.loc["a", "best_val_acc"] == 55.0 and trials.loc["b", "best_epoch"] == 1
    assert list(trials["epochs_run"]) == [2, 2]
    assert set(trials["status"]) == {"TERMINATED"}
    assert list(experiment.epochs["stage"]) == [1, 1, 1, 1]
    assert experiment.epochs["train_acc"].isna().all()
    assert results.top_trials(experiment.trials, k=1).iloc[0]["lr"] == 1e-4


def test_a_damaged_part_is_skipped_with_a_warning(handmade):
    experiment, _ = handmade
    bad = experiment.path / "epochs.parquet" / "part-999999-deadbeef.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.warns(UserWarning, match="part-999999"):
        again = results.load_experiment(experiment.path)
    assert len(again.epochs) == 24 * 7


def test_reading_while_a_search_writes_sees_only_complete_parts(tmp_path):
    exp, rows_per_part, parts = tmp_path / "live", 5, 40
    started = TrialsTableWriter(exp)
    started.update("w", {"status": "RUNNING", "lr": 1e-3})
    started.write()
    done = threading.Event()

    def write() -> None:
        trials = TrialsTableWriter(exp)
        with EpochPartWriter(exp, flush_interval_s=0) as writer:
            for part in range(parts):
                for epoch in range(part * rows_per_part + 1, (part + 1) * rows_per_part + 1):
                    writer.add({"trial_id": "w", "epoch": epoch, "val_acc": float(epoch)})
                writer.flush()
                trials.update("w", {"status": "RUNNING", "lr": 1e-3, "epochs_run": epoch})
                trials.write()
        done.set()

    thread = threading.Thread(target=write)
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no partial file may ever be read
        thread.start()
        while not done.is_set() or not seen or seen[-1] < parts * rows_per_part:
            epochs = results.load_experiment(exp).epochs
            assert len(epochs) % rows_per_part == 0
            assert list(epochs["epoch"]) == list(range(1, len(epochs) + 1))
            seen.append(len(epochs))
        thread.join()
    assert seen == sorted(seen) and seen[-1] == parts * rows_per_part
    assert len(set(seen)) > 1  # the reader did overlap the writer
