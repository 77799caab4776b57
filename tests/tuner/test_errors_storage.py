"""Results and checkpoints are never partially written, and a damaged Parquet file is reported by
name and skipped by every reader: a crash in the middle of a write leaves the previous file."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from tests.tuner.test_results import write_handmade
from tuner.cli import main
from tuner.results import (
    EPOCHS_DIR,
    METADATA_FILE,
    TRIALS_FILE,
    EpochPartWriter,
    TrialsTableWriter,
    read_epochs,
    read_experiment_metadata,
    read_trials,
    write_experiment_metadata,
)
from tuner.training.checkpoints.files import load_checkpoint, save_checkpoint


def disk_full_after_some_bytes(write: Any) -> Any:
    """``write`` that puts a few real bytes in the file, then fails as a full disk does."""

    def failing(obj: Any, handle: IO[bytes], *args: Any, **kwargs: Any) -> None:
        handle.write(b"PAR1 half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return failing


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_checkpoint_save_that_fails_midway_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "latest.pt"
    save_checkpoint({"epoch": 1, "weights": torch.ones(3)}, path)
    monkeypatch.setattr(
        "tuner.training.checkpoints.files.torch.save", disk_full_after_some_bytes(torch.save)
    )
    with pytest.raises(OSError, match="No space left on device"):
        save_checkpoint({"epoch": 2, "weights": torch.zeros(3)}, path)
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["weights"], torch.ones(3))
    assert listing(path.parent) == ["latest.pt"]  # the temporary file is gone


def test_a_trials_table_write_that_fails_midway_keeps_the_previous_table(tmp_path, monkeypatch):
    writer = TrialsTableWriter(tmp_path)
    writer.update("t1", {"status": "RUNNING", "lr": 1e-3, "best_val_acc": 40.0})
    writer.write()
    before = (tmp_path / TRIALS_FILE).read_bytes()
    writer.update("t1", {"status": "TERMINATED", "best_val_acc": 55.0})
    monkeypatch.setattr("tuner.results._store.pq.write_table", disk_full_after_some_bytes(None))
    with pytest.raises(OSError, match="No space left on device"):
        writer.write()
    monkeypatch.undo()
    assert (tmp_path / TRIALS_FILE).read_bytes() == before
    assert read_trials(tmp_path)["status"].tolist() == ["RUNNING"]
    assert listing(tmp_path) == [TRIALS_FILE]
    assert writer.write()  # the change is still pending and goes out once the disk has room
    assert read_trials(tmp_path)["status"].tolist() == ["TERMINATED"]


def test_an_epochs_part_that_fails_midway_is_never_visible(tmp_path, monkeypatch):
    writer = EpochPartWriter(tmp_path, flush_interval_s=0)
    writer.add({"trial_id": "t1", "epoch": 1, "val_acc": 10.0})
    writer.flush()
    writer.add({"trial_id": "t1", "epoch": 2, "val_acc": 20.0})
    monkeypatch.setattr("tuner.results._store.pq.write_table", disk_full_after_some_bytes(None))
    with pytest.raises(OSError, match="No space left on device"):
        writer.flush()
    monkeypatch.undo()
    assert len(listing(tmp_path / EPOCHS_DIR)) == 1
    assert read_epochs(tmp_path)["epoch"].tolist() == [1]
    assert pd.read_parquet(tmp_path / EPOCHS_DIR)["epoch"].tolist() == [1]
    writer.flush()  # the buffered row was kept
    assert read_epochs(tmp_path)["epoch"].tolist() == [1, 2]


def test_an_experiment_record_rewrite_that_fails_keeps_the_previous_record(tmp_path, monkeypatch):
    record = {"space_name": "demo", "space_text": "x", "dataset_fingerprint": "f", "argv": []}
    write_experiment_metadata(tmp_path, overrides={"data": "/first"}, **record)
    before = (tmp_path / METADATA_FILE).read_bytes()

    def failing_replace(src: Any, dst: Any) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr("tuner.atomic.os.replace", failing_replace)
    with pytest.raises(OSError):
        write_experiment_metadata(tmp_path, overrides={"data": "/second"}, **record)
    monkeypatch.undo()
    assert (tmp_path / METADATA_FILE).read_bytes() == before
    assert read_experiment_metadata(tmp_path)["space"]["overrides"] == {"data": "/first"}
    assert listing(tmp_path) == [METADATA_FILE]


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[Path, Path]:
    """A hand-made experiment whose fourth epochs part lost its second half."""
    write_handmade(tmp_path / "grid")
    part = sorted((tmp_path / "grid" / EPOCHS_DIR).glob("*.parquet"))[3]
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])
    return tmp_path, part


def test_every_results_command_skips_a_truncated_part(damaged, capsys):
    storage, part = damaged
    curves = storage / "curves.png"
    for command in (["pivot", "grid", "--rows", "lr", "--cols", "gamma"],
                    ["curves", "grid", "--out", str(curves)], ["list"]):  # fmt: skip
        with pytest.warns(UserWarning, match=f"skipping unreadable Parquet file {part}"):
            assert main(["results", *command, "--storage", str(storage)]) == 0
    assert curves.stat().st_size > 0
    assert "Traceback" not in capsys.readouterr().err
    with pytest.warns(UserWarning, match=f"skipping unreadable Parquet file {part}"):
        assert main(["results", "top", "grid", "--storage", str(storage), "-k", "1"]) == 0
    assert "73.50" in capsys.readouterr().out  # the best configuration, from the intact tables


def test_the_readers_skip_a_truncated_part_with_a_warning(damaged):
    storage, part = damaged
    with pytest.warns(UserWarning, match=f"skipping unreadable Parquet file {part}"):
        epochs = read_epochs(storage / "grid")
    assert len(epochs) == 24 * 7 - 7  # one trial's seven epochs were in the damaged part
    assert len(pq.read_table(sorted((storage / "grid" / EPOCHS_DIR).glob("*"))[0])) == 7


def test_a_truncated_trials_table_is_reported_and_read_as_empty(damaged, capsys):
    storage, part = damaged
    table = storage / "grid" / TRIALS_FILE
    data = table.read_bytes()
    table.write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match=f"skipping unreadable Parquet file {table}"):
        assert read_trials(storage / "grid").empty
    with pytest.warns(UserWarning) as caught:
        assert main(["results", "list", "--storage", str(storage)]) == 0
    assert "grid" in capsys.readouterr().out
    named = {str(warning.message).split(": ")[0] for warning in caught}
    assert named == {f"skipping unreadable Parquet file {path}" for path in (table, part)}
    assert table.read_bytes() == data[: len(data) // 2]  # reported, never rewritten
