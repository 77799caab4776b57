"""The Parquet tables and the experiment metadata, written and read back without Ray."""

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tuner.atomic import write_atomic
from tuner.results import (
    EPOCH_SCHEMA,
    SCHEMA_VERSION,
    EpochPartWriter,
    PredictionPartWriter,
    TrialsTableWriter,
    read_epochs,
    read_experiment_metadata,
    read_predictions,
    read_trials,
    write_experiment_metadata,
)


def _engine_row(trial_id, epoch, **extra):
    """A row shaped like the training engine's per-epoch report."""
    row = {
        "trial_id": trial_id,
        "epoch": epoch,
        "stage": 2,
        "stage_epoch": epoch,
        "train_loss": 1.0 / epoch,
        "train_acc": 50 + epoch,
        "val_loss": 2.0 / epoch,
        "val_acc": 40 + epoch,
        "lr": 1e-4,
        "best_val_acc": 40 + epoch,
        "best_epoch": epoch,
        "seconds": 1.5,
        "clips_per_s": 12,
    }
    row.update(extra)
    return row


def _parts(exp_dir):
    return sorted((exp_dir / "epochs.parquet").glob("part-*.parquet"))


def _duckdb_rows(exp_dir):
    pattern = str(exp_dir / "epochs.parquet" / "*.parquet")
    return duckdb.sql(f"SELECT trial_id, epoch FROM read_parquet('{pattern}')").fetchall()


def test_flushed_rows_read_back_by_pandas_and_duckdb(tmp_path):
    with EpochPartWriter(tmp_path) as writer:
        for epoch in (1, 2, 3):
            writer.add(_engine_row("t1", epoch))
        writer.flush()
        writer.add(_engine_row("t2", 1))
    frame = pd.read_parquet(tmp_path / "epochs.parquet")
    assert sorted(zip(frame.trial_id, frame.epoch, strict=True)) == [
        ("t1", 1),
        ("t1", 2),
        ("t1", 3),
        ("t2", 1),
    ]
    assert sorted(_duckdb_rows(tmp_path)) == [("t1", 1), ("t1", 2), ("t1", 3), ("t2", 1)]
    assert len(_parts(tmp_path)) == 2


def test_every_part_has_the_fixed_schema_whatever_the_row_types(tmp_path):
    with EpochPartWriter(tmp_path) as writer:
        writer.add({"trial_id": "a", "epoch": 1.0, "val_acc": 50, "stage": 1})
        writer.flush()
        writer.add(_engine_row("a", 2, ms_loss=0.3))
    for part in _parts(tmp_path):
        schema = pq.read_schema(part)
        assert schema.remove_metadata() == EPOCH_SCHEMA.remove_metadata()
        assert schema.metadata[b"schema_version"] == str(SCHEMA_VERSION).encode()
    frame = pd.read_parquet(tmp_path / "epochs.parquet")
    assert frame["epoch"].dtype == "int64"
    assert frame["val_acc"].dtype == "float64"


def test_metrics_missing_from_some_rows_are_null(tmp_path):
    with EpochPartWriter(tmp_path) as writer:
        writer.add(_engine_row("plain", 1))
        writer.add(_engine_row("ms", 1, ms_loss=0.25, sd_loss=0.5))
    frame = read_epochs(tmp_path).set_index("trial_id")
    assert frame.loc["ms", "ms_loss"] == 0.25
    assert frame.loc["ms", "sd_loss"] == 0.5
    assert pd.isna(frame.loc["plain", "ms_loss"])


def test_a_key_already_added_is_dropped(tmp_path):
    with EpochPartWriter(tmp_path) as writer:
        assert writer.add(_engine_row("t", 1, val_acc=10.0))
        writer.flush()
        assert not writer.add(_engine_row("t", 1, val_acc=99.0))
        assert writer.pending == 0
    frame = read_epochs(tmp_path)
    assert frame["val_acc"].tolist() == [10.0]


def test_a_new_writer_skips_keys_already_on_disk(tmp_path):
    with EpochPartWriter(tmp_path) as first:
        first.add(_engine_row("t", 1))
        first.add(_engine_row("t", 2))
    second = EpochPartWriter(tmp_path)
    assert ("t", 2) in second
    assert not second.add(_engine_row("t", 2))
    assert second.add(_engine_row("t", 3))
    second.close()
    frame = pd.read_parquet(tmp_path / "epochs.parquet")
    assert sorted(frame["epoch"]) == [1, 2, 3]
    assert [p.name[:11] for p in _parts(tmp_path)] == ["part-000000", "part-000001"]


def test_other_plain_metrics_are_kept_in_extra_and_expanded_by_the_reader(tmp_path):
    with EpochPartWriter(tmp_path) as writer:
        writer.add(_engine_row("t", 1, grad_norm=3.5, phase="warmup", frozen=True, hist=[1, 2]))
        writer.add(_engine_row("t", 2))
    raw = pd.read_parquet(tmp_path / "epochs.parquet").sort_values("epoch")
    assert json.loads(raw["extra"].iloc[0]) == {"frozen": True, "grad_norm": 3.5, "phase": "warmup"}
    assert pd.isna(raw["extra"].iloc[1])
    frame = read_epochs(tmp_path)
    assert "extra" not in frame.columns and "hist" not in frame.columns
    assert frame.loc[0, "grad_norm"] == 3.5 and frame.loc[0, "phase"] == "warmup"
    assert pd.isna(frame.loc[1, "grad_norm"])


def test_a_value_that_does_not_fit_its_column_goes_to_extra_with_a_warning(tmp_path):
    writer = EpochPartWriter(tmp_path)
    with pytest.warns(UserWarning, match="'stage'"):
        writer.add(_engine_row("t", 1, stage="two"))
    writer.close()
    frame = read_epochs(tmp_path)
    assert pd.isna(frame.loc[0, "stage"])
    assert frame.loc[0, "extra.stage"] == "two"


@pytest.mark.parametrize(
    "row",
    [{"epoch": 1}, {"trial_id": "t"}, {"trial_id": "t", "epoch": 1.5}, {"trial_id": 3, "epoch": 1}],
)
def test_a_row_without_trial_id_and_whole_epoch_is_refused(tmp_path, row):
    with pytest.raises(ValueError, match="trial_id"):
        EpochPartWriter(tmp_path).add(row)


def test_maybe_flush_writes_once_the_interval_has_passed(tmp_path):
    now = [100.0]
    writer = EpochPartWriter(tmp_path, flush_interval_s=5.0, clock=lambda: now[0])
    writer.add(_engine_row("t", 1))
    now[0] += 4.0
    assert writer.maybe_flush() is None
    assert _parts(tmp_path) == []
    now[0] += 1.0
    written = writer.maybe_flush()
    assert written is not None and _parts(tmp_path) == [written]
    assert writer.pending == 0


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_part_is_skipped_with_a_warning_naming_it(tmp_path, damage):
    with EpochPartWriter(tmp_path) as writer:
        writer.add(_engine_row("t", 1))
        writer.flush()
        writer.add(_engine_row("t", 2))
    bad = _parts(tmp_path)[1]
    data = bad.read_bytes()
    bad.write_bytes(b"not parquet at all" if damage == "garbage" else data[: len(data) // 2])
    with pytest.warns(UserWarning, match=re.escape(bad.name)):
        frame = read_epochs(tmp_path)
    assert frame["epoch"].tolist() == [1]
    with pytest.warns(UserWarning, match=re.escape(bad.name)):
        reopened = EpochPartWriter(tmp_path)
    # The damaged rows are lost, so a replay may write them again.
    assert ("t", 1) in reopened and ("t", 2) not in reopened


def test_a_leftover_temporary_file_is_ignored_by_every_reader(tmp_path):
    with EpochPartWriter(tmp_path) as writer:
        writer.add(_engine_row("t", 1))
    leftover = tmp_path / "epochs.parquet" / ".part-000001-deadbeef.parquet.1a2b3c4d.tmp"
    leftover.write_bytes(_parts(tmp_path)[0].read_bytes()[:100])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_epochs(tmp_path)["epoch"].tolist() == [1]
        assert EpochPartWriter(tmp_path).key_count == 1
    assert pd.read_parquet(tmp_path / "epochs.parquet")["epoch"].tolist() == [1]
    assert _duckdb_rows(tmp_path) == [("t", 1)]


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "table.bin"
    target.write_bytes(b"old")

    def fail_halfway(handle):
        handle.write(b"new but incomp")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, fail_halfway)
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_read_epochs_of_an_empty_folder_has_the_columns(tmp_path):
    frame = read_epochs(tmp_path)
    assert frame.empty
    assert set(EPOCH_SCHEMA.names) - {"extra"} <= set(frame.columns)


# -- trials table ---------------------------------------------------------------------------


def test_trials_table_types_hyperparameters_by_their_values(tmp_path):
    table = TrialsTableWriter(tmp_path)
    table.update("a", {"status": "RUNNING", "lr": 1e-3, "alpha.ms": 1, "cam": True, "seed": 3})
    table.update("a", {"milestones": [25, 75], "best_val_acc": 61.5, "epochs_run": 4})
    table.update("b", {"status": "PENDING", "lr": 1e-4, "alpha.ms": 0.5, "cam": False})
    assert table.write()
    schema = pq.read_schema(tmp_path / "trials.parquet")
    assert schema.names == [
        "trial_id",
        "status",
        "alpha.ms",
        "cam",
        "lr",
        "milestones",
        "seed",
        "best_val_acc",
        "best_epoch",
        "epochs_run",
        "wall_seconds",
        "flops",
        "gpu_seconds",
        "checkpoint",
        "early_stopped",
        "num_failures",
    ]
    assert str(schema.field("alpha.ms").type) == "double"
    assert str(schema.field("cam").type) == "bool"
    assert str(schema.field("seed").type) == "int64"
    assert schema.metadata[b"schema_version"] == str(SCHEMA_VERSION).encode()
    frame = pd.read_parquet(tmp_path / "trials.parquet").set_index("trial_id")
    assert json.loads(frame.loc["a", "milestones"]) == [25, 75]
    assert frame.loc["b", "status"] == "PENDING"


def test_trials_table_is_rewritten_only_when_a_row_changes(tmp_path):
    table = TrialsTableWriter(tmp_path)
    table.update("a", {"status": "RUNNING"})
    assert table.write()
    table.update("a", {"status": "RUNNING"})
    assert not table.write()
    table.update("a", {"status": "TERMINATED"})
    assert table.write()
    assert read_trials(tmp_path)["status"].tolist() == ["TERMINATED"]


def test_a_new_trials_writer_keeps_the_rows_on_disk(tmp_path):
    first = TrialsTableWriter(tmp_path)
    first.update("old", {"status": "TERMINATED", "lr": 1e-3, "best_val_acc": 60.0})
    first.write()
    second = TrialsTableWriter(tmp_path)
    second.update("new", {"status": "RUNNING", "lr": 1e-4})
    second.write()
    frame = read_trials(tmp_path).set_index("trial_id")
    assert frame.loc["old", "best_val_acc"] == 60.0
    assert frame.loc["new", "status"] == "RUNNING"
    assert [p.name for p in tmp_path.iterdir()] == ["trials.parquet"]


def test_a_damaged_trials_file_is_reported_and_read_as_empty(tmp_path):
    (tmp_path / "trials.parquet").write_bytes(b"PAR1 truncated")
    with pytest.warns(UserWarning, match=r"trials\.parquet"):
        frame = read_trials(tmp_path)
    assert frame.empty and {"trial_id", "status", "best_val_acc"} <= set(frame.columns)


# -- experiment metadata --------------------------------------------------------------------


def _write_metadata(exp_dir, **changes):
    values = {
        "space_name": "ego_rnn_stage2",
        "space_text": "lr:\n  choice: [1.0e-4, 5.0e-4]\n",
        "overrides": {"epochs": 3, "alpha": {"ms": 0.5}, "milestones": (1, 2)},
        "dataset_fingerprint": "sha256:abc123",
        "argv": ["egotune", "search", "run", "ego_rnn_stage2"],
    }
    values.update(changes)
    return write_experiment_metadata(exp_dir, **values)


def test_metadata_records_how_the_search_was_run(tmp_path):
    exp_dir = tmp_path / "exp1"
    record = _write_metadata(exp_dir)
    assert read_experiment_metadata(exp_dir) == record
    assert record["experiment"] == "exp1"
    assert record["schema_version"] == SCHEMA_VERSION
    assert record["space"] == {
        "name": "ego_rnn_stage2",
        "text": "lr:\n  choice: [1.0e-4, 5.0e-4]\n",
        "overrides": {"epochs": 3, "alpha": {"ms": 0.5}, "milestones": [1, 2]},
    }
    assert record["dataset_fingerprint"] == "sha256:abc123"
    assert record["argv"] == ["egotune", "search", "run", "ego_rnn_stage2"]
    assert record["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    import ray
    import torch

    assert record["versions"]["ray"] == ray.__version__
    assert record["versions"]["torch"] == torch.__version__.split("+")[0]
    assert record["versions"]["cuda"] == (torch.version.cuda or "none")
    assert record["code_version"]["package_version"] == "0.1.0"
    assert record["hostname"] and record["started_at"].endswith("+00:00")


def test_metadata_git_version_matches_git_describe(tmp_path):
    root = Path(__file__).resolve().parents[2]
    describe = subprocess.run(
        ["git", "-C", str(root), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    expected = describe.stdout.strip() if describe.returncode == 0 else "unknown"
    assert _write_metadata(tmp_path)["code_version"]["git"] == expected


def test_rewriting_metadata_keeps_earlier_runs(tmp_path):
    _write_metadata(tmp_path, argv=["first"])
    _write_metadata(tmp_path, argv=["second"])
    record = _write_metadata(tmp_path, argv=["third"])
    assert record["argv"] == ["third"]
    assert [run["argv"] for run in record["previous_runs"]] == [["first"], ["second"]]
    assert "previous_runs" not in record["previous_runs"][1]
    assert [p.name for p in tmp_path.iterdir()] == ["experiment.json"]


def test_a_resumed_search_keeps_its_first_start_time(tmp_path):
    first = _write_metadata(tmp_path, argv=["first"])
    assert "resumed_at" not in first
    (tmp_path / "experiment.json").write_text(
        (tmp_path / "experiment.json")
        .read_text()
        .replace(first["started_at"], "2026-01-02T03:04:05+00:00")
    )
    second = _write_metadata(tmp_path, argv=["second"])
    third = _write_metadata(tmp_path, argv=["third"])
    assert second["started_at"] == third["started_at"] == "2026-01-02T03:04:05+00:00"
    assert third["resumed_at"] > "2026-01-02T03:04:05+00:00"
    assert third["previous_runs"][1]["resumed_at"] == second["resumed_at"]


def test_reading_metadata_of_a_folder_without_it_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"experiment\.json"):
        read_experiment_metadata(tmp_path)


def test_a_trial_tune_did_not_restore_leaves_the_tables(tmp_path):
    """A driver killed before Tune saved a trial it had suggested, or one that had reported
    epochs: the resumed search ran its configuration under another id. At the end, the trials
    table drops every trial Tune does not know, and the readers leave out its epoch and
    prediction rows, which stay on disk."""
    table = TrialsTableWriter(tmp_path)
    table.update("ran", {"status": "TERMINATED", "lr": 0.1, "epochs_run": 1})
    table.update("lost", {"status": "RUNNING", "lr": 0.1, "epochs_run": 1})
    table.update("stale", {"status": "PENDING", "lr": 0.1})
    table.update("waiting", {"status": "PENDING", "lr": 0.01})
    table.write()
    with EpochPartWriter(tmp_path) as epochs:
        for trial_id in ("ran", "lost"):
            epochs.add({"trial_id": trial_id, "epoch": 1, "val_acc": 50.0})
    predictions = PredictionPartWriter(tmp_path)
    for trial_id in ("ran", "lost"):
        one_video = {"video": ["v1"], "user": ["S2"], "true_class": ["a"], "pred_class": ["a"]}
        predictions.add(trial_id, 1, {**one_video, "p_true": [0.9], "top_classes": [["a"]],
                                      "top_probs": [[0.9]]})  # fmt: skip
    predictions.flush()
    assert sorted(read_epochs(tmp_path)["trial_id"]) == ["lost", "ran"]

    reread = TrialsTableWriter(tmp_path)
    assert reread.forget_unknown({"ran", "waiting", "again"}) == ["lost", "stale"]
    reread.write()
    assert sorted(read_trials(tmp_path)["trial_id"]) == ["ran", "waiting"]
    assert list(read_epochs(tmp_path)["trial_id"]) == ["ran"]
    assert set(read_predictions(tmp_path)["trial_id"]) == {"ran"}
    assert len(list((tmp_path / "epochs.parquet").glob("*.parquet"))) == 1, "rows kept on disk"
