"""ParquetResultsCallback in real Ray Tune searches of a tiny function trainable."""

import json
import tempfile
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from ray import tune

from tuner.results import read_epochs, read_trials
from tuner.tune.callbacks import ParquetResultsCallback, epoch_row

# Validation accuracy per epoch: the best epoch is 2 for every trial.
_VAL_ACC = (40.0, 60.0, 55.0, 50.0)


pytestmark = pytest.mark.usefixtures("local_ray")


def _load_state(checkpoint):
    with checkpoint.as_directory() as directory:
        return json.loads((Path(directory) / "state.json").read_text())


def _report_epoch(epoch, state, metrics):
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "state.json").write_text(json.dumps(state))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def _fake_engine(config):
    """Reports like the training engine: one result and one checkpoint per epoch.

    On restore it continues after the checkpointed epoch, minus ``replay`` epochs reported again.
    With ``fail_marker`` it raises once, after epoch 2 of the attempt that creates the marker.
    """
    state = {"epoch": 0, "attempt": 0, "best": 0.0, "best_epoch": 0}
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        state = _load_state(checkpoint)
    attempt = state["attempt"] + 1
    offset = 5.0 if config["model"] == "ego_rnn_ms" else 0.0
    start = max(1, state["epoch"] + 1 - config.get("replay", 0))
    for epoch in range(start, config["epochs"] + 1):
        val_acc = _VAL_ACC[epoch - 1] + offset
        if val_acc > state["best"]:
            state.update(best=val_acc, best_epoch=epoch)
        state.update(epoch=epoch, attempt=attempt)
        metrics = {
            **dict(epoch=epoch, stage=2, stage_epoch=epoch, lr=1e-4, seconds=0.01),
            **dict(train_loss=1.0 / epoch, train_acc=50.0 + epoch, val_loss=2.0 / epoch),
            **dict(val_acc=val_acc, best_val_acc=state["best"], best_epoch=state["best_epoch"]),
            **dict(clips_per_s=100.0, attempt=attempt),
        }
        if config["model"] == "ego_rnn_ms":
            metrics["ms_loss"] = 0.5 / epoch
        _report_epoch(epoch, state, metrics)
        marker = config.get("fail_marker")
        if marker and epoch == 2 and not Path(marker).exists():
            Path(marker).touch()
            raise RuntimeError("simulated worker failure")


def _fit(tmp_path, param_space, callback, **run_options):
    tuner = tune.Tuner(
        _fake_engine,
        param_space=param_space,
        run_config=tune.RunConfig(
            name="exp", storage_path=str(tmp_path), callbacks=[callback], verbose=0, **run_options
        ),
    )
    return tuner.fit()


def _without_marker(config):
    return {key: value for key, value in config.items() if key != "fail_marker"}


def _keys(frame):
    return sorted(zip(frame["trial_id"], frame["epoch"], strict=True))


@pytest.fixture(scope="module")
def grid_run(module_tmp):
    """A 2 x 2 grid; trials planned for 4 epochs are stopped after epoch 3."""
    storage = module_tmp
    callback = ParquetResultsCallback(
        storage / "exp", planned_epochs=lambda config: config["epochs"], flush_interval_s=0.5
    )
    param_space = {
        "model": tune.grid_search(["ego_rnn", "ego_rnn_ms"]),
        "epochs": tune.grid_search([2, 4]),
        "alpha": {"ms": 0.5},
        "seed": 7,
    }
    results = _fit(storage, param_space, callback, stop=lambda _, result: result["epoch"] >= 3)
    assert not results.errors
    return storage / "exp", results


def test_search_tables_hold_each_trial_and_epoch_once_as_read_by_pandas(grid_run):
    exp_dir, results = grid_run
    epochs = pd.read_parquet(exp_dir / "epochs.parquet")
    trials = pd.read_parquet(exp_dir / "trials.parquet")
    expected = sorted(
        (r.metrics["trial_id"], e)
        for r in results
        for e in range(1, min(r.config["epochs"], 3) + 1)
    )
    assert _keys(epochs) == expected
    assert sorted(trials["trial_id"]) == sorted({r.metrics["trial_id"] for r in results})
    assert trials["trial_id"].is_unique


def test_search_tables_are_read_by_duckdb(grid_run):
    exp_dir, _ = grid_run
    epochs_glob = exp_dir / "epochs.parquet" / "*.parquet"
    rows, keys = duckdb.sql(
        f"SELECT count(*), count(DISTINCT (trial_id, epoch)) FROM read_parquet('{epochs_glob}')"
    ).fetchall()[0]
    assert rows == keys == 10
    (trials,) = duckdb.sql(f"SELECT count(*) FROM '{exp_dir / 'trials.parquet'}'").fetchall()[0]
    assert trials == 4


def test_epochs_table_keeps_the_engine_metrics_and_drops_tune_bookkeeping(grid_run):
    epochs = read_epochs(grid_run[0])
    for column in ("stage", "stage_epoch", "train_loss", "val_acc", "lr", "seconds", "attempt"):
        assert epochs[column].notna().all(), column
    for column in ("config", "training_iteration", "time_total_s", "timestamp", "pid", "done"):
        assert column not in epochs.columns
    assert not any(column.startswith("config") for column in epochs.columns)


def test_auxiliary_losses_are_null_for_models_without_them(grid_run):
    exp_dir, results = grid_run
    epochs = read_epochs(exp_dir)
    model = {r.metrics["trial_id"]: r.config["model"] for r in results}
    has_ms = epochs["trial_id"].map(model) == "ego_rnn_ms"
    assert epochs.loc[has_ms, "ms_loss"].notna().all()
    assert epochs.loc[~has_ms, "ms_loss"].isna().all()


def test_trials_table_has_the_flattened_hyperparameters_and_summaries(grid_run):
    exp_dir, results = grid_run
    trials = read_trials(exp_dir).set_index("trial_id")
    for result in results:
        row = trials.loc[result.metrics["trial_id"]]
        assert row["model"] == result.config["model"]
        assert row["epochs"] == result.config["epochs"]
        assert row["alpha.ms"] == 0.5 and row["seed"] == 7
        assert row["status"] == "TERMINATED"
        assert row["best_epoch"] == 2
        assert row["best_val_acc"] == _VAL_ACC[1] + (5.0 if row["model"] == "ego_rnn_ms" else 0)
        assert row["epochs_run"] == min(result.config["epochs"], 3)
        assert row["wall_seconds"] > 0


def test_only_trials_stopped_before_their_planned_epochs_are_early_stopped(grid_run):
    trials = read_trials(grid_run[0])
    assert dict(zip(trials["epochs"], trials["early_stopped"], strict=True)) == {
        2: False,
        4: True,
    }


def test_checkpoint_column_of_a_trainable_without_pointers_is_its_latest_checkpoint(grid_run):
    trials = read_trials(grid_run[0])
    for path, runs in zip(trials["checkpoint"], trials["epochs_run"], strict=True):
        state = json.loads((Path(path) / "state.json").read_text())
        assert state["epoch"] == runs and state["best_epoch"] == 2


def test_retried_trial_records_each_epoch_once(tmp_path):
    callback = ParquetResultsCallback(tmp_path / "exp", config_resolver=_without_marker)
    param_space = {"model": "ego_rnn", "epochs": 4, "fail_marker": str(tmp_path / "failed")}
    results = _fit(
        tmp_path, param_space, callback, failure_config=tune.FailureConfig(max_failures=2)
    )
    assert not results.errors
    epochs = pd.read_parquet(tmp_path / "exp" / "epochs.parquet")
    assert sorted(epochs["epoch"]) == [1, 2, 3, 4]
    attempts = read_epochs(tmp_path / "exp").set_index("epoch")["attempt"]
    assert attempts.to_dict() == {1: 1, 2: 1, 3: 2, 4: 2}
    (trial,) = read_trials(tmp_path / "exp").to_dict("records")
    assert trial["status"] == "TERMINATED" and trial["num_failures"] == 1
    assert "fail_marker" not in trial and trial["epochs_run"] == 4


def test_restored_search_skips_epochs_already_on_disk(tmp_path):
    exp_dir = tmp_path / "exp"
    callback = ParquetResultsCallback(exp_dir, config_resolver=_without_marker)
    marker = str(tmp_path / "failed")
    param_space = {"model": "ego_rnn", "epochs": 4, "replay": 1, "fail_marker": marker}
    first = _fit(tmp_path, param_space, callback)
    assert len(first.errors) == 1
    assert read_trials(exp_dir)["status"].tolist() == ["ERROR"]
    assert sorted(read_epochs(exp_dir)["epoch"]) == [1, 2]

    # Tune.restore unpickles a fresh callback; the trial restarts at the checkpointed epoch 2.
    restored = tune.Tuner.restore(str(exp_dir), trainable=_fake_engine, resume_errored=True)
    assert not restored.fit().errors
    epochs = pd.read_parquet(exp_dir / "epochs.parquet")
    assert sorted(epochs["epoch"]) == [1, 2, 3, 4]
    attempts = read_epochs(exp_dir).set_index("epoch")["attempt"]
    assert attempts.to_dict() == {1: 1, 2: 1, 3: 2, 4: 2}  # the first report of epoch 2 stays
    (trial,) = read_trials(exp_dir).to_dict("records")
    assert trial["status"] == "TERMINATED" and trial["epochs_run"] == 4


def test_epoch_row_flattens_metrics_and_leaves_out_tune_keys():
    result = {
        "epoch": 3,
        "val_acc": 61.0,
        "aux": {"ms": 0.1},
        "config": {"lr": 1e-4},
        "training_iteration": 3,
        "time_total_s": 12.0,
        "time_this_iter_s": 4.0,
        "timestamp": 1,
        "date": "2026-01-01",
        "done": False,
        "trial_id": "abc",
        "checkpoint_dir_name": "checkpoint_000002",
        "should_checkpoint": True,
        "hostname": "node",
        "node_ip": "10.0.0.1",
        "pid": 42,
        "experiment_tag": "0_lr=0.0001",
    }
    assert epoch_row("abc", result) == {
        "trial_id": "abc",
        "epoch": 3,
        "val_acc": 61.0,
        "aux.ms": 0.1,
    }


def test_epoch_row_falls_back_to_the_training_iteration():
    assert epoch_row("t", {"training_iteration": 5, "loss": 1.0})["epoch"] == 5
