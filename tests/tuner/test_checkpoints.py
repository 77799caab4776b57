"""Periodic checkpoints written off the training loop: policy, files, failures, exact resumes."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import torch

from data_pipeline import discover
from tests.conftest import tiny_config_values
from tuner.training.checkpoints.files import CheckpointError, load_checkpoint
from tuner.training.checkpoints.policy import CheckpointPolicy, auto_every
from tuner.training.checkpoints.writer import (
    FINAL_BEST,
    CheckpointFolder,
    RunCheckpoints,
    resume_run,
)
from tuner.training.config import TrainConfig
from tuner.training.engine import TIME_FIELDS, Trainer


def make_trainer(root: Path, **overrides: object) -> Trainer:
    values = tiny_config_values(**{"stage": "2", "epochs": 6, **overrides})
    return Trainer(TrainConfig.from_dict(values), discover(root))


def run(trainer: Trainer, folder: Path, every: int | str, max_epochs: int | None = None) -> list:
    """Train with checkpoints into ``folder``; returns the records (time fields dropped)."""
    checkpoints = RunCheckpoints(trainer, CheckpointFolder(folder), CheckpointPolicy(every))
    latest = CheckpointFolder(folder).newest_state()
    if latest is not None:
        resume_run(trainer, checkpoints, latest)
    records = []
    for record in trainer.run(max_epochs):
        epochs = trainer.config.stage_settings(trainer.stage).epochs or 0
        checkpoints.after_epoch(1.0, stage_end=trainer.stage_epoch >= epochs, last=trainer.finished)
        records.append({k: v for k, v in record.to_dict().items() if k not in TIME_FIELDS})
    checkpoints.close(wait=True)
    return records


@pytest.mark.parametrize(
    ("snapshot_s", "write_s", "epoch_s", "every"),
    [
        (0.1, 2.0, 60.0, 1),  # a CPU epoch: every epoch
        (0.02, 2.0, 0.46, 88),  # Fig. 10 at 200 TFLOP/s: about every 40 s
        (0.0, 0.0, 1.0, 1),
    ],
)
def test_auto_keeps_checkpointing_within_five_percent_of_the_epochs(
    snapshot_s, write_s, epoch_s, every
):
    assert auto_every(snapshot_s, write_s, epoch_s) == every
    assert (snapshot_s + write_s) / every <= 0.05 * epoch_s + 1e-12


def test_the_policy_checkpoints_every_n_epochs_at_stage_ends_and_at_the_end():
    policy = CheckpointPolicy(3)
    due = []
    for epoch in range(1, 9):
        if policy.due(epoch, stage_end=epoch == 4, last=epoch == 8):
            policy.taken(epoch, snapshot_s=0.0)
            due.append(epoch)
    assert due == [3, 4, 7, 8]
    with pytest.raises(ValueError, match="checkpoint_every"):
        CheckpointPolicy(0)


def test_periodic_files_keep_three_states_and_the_best_they_name(synthetic_root, tmp_path):
    run(make_trainer(synthetic_root), tmp_path, every=1)
    names = sorted(p.name for p in tmp_path.iterdir())
    states = [n for n in names if n.startswith("state-")]
    assert states == ["state-e00004.pt", "state-e00005.pt", "state-e00006.pt"]
    assert FINAL_BEST in names
    for state in states:  # every kept state's best file is still there
        best = load_checkpoint(tmp_path / state)["best_file"]
        assert best is None or (tmp_path / best).is_file()


def test_a_resume_state_holds_the_trained_entries_only_and_no_best_weights(
    synthetic_root, tmp_path
):
    trainer = make_trainer(synthetic_root, epochs=2)
    run(trainer, tmp_path, every=1)
    state = load_checkpoint(tmp_path / "state-e00002.pt")
    trained = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trained <= set(state["model"]) and len(state["model"]) < len(trainer.model.state_dict())
    assert "best_model" not in state and state["frozen_source"]["weights_source"] == "none"
    final = load_checkpoint(tmp_path / FINAL_BEST)
    assert set(final["model"]) == set(trainer.model.state_dict())  # complete, frozen included
    assert "optimizer" not in final


@pytest.mark.parametrize("every", [1, 3])
def test_a_run_cut_between_checkpoints_replays_to_the_same_metrics(synthetic_root, tmp_path, every):
    values = {"stage": "both", "stage1": {"epochs": 2}, "epochs": 4}
    straight = run(make_trainer(synthetic_root, **values), tmp_path / "straight", every)
    shutil.rmtree(tmp_path / "straight")  # its records are all it gives: half a GiB less on disk
    cut = tmp_path / "cut"
    head = run(make_trainer(synthetic_root, **values), cut, every, max_epochs=4)
    newest = load_checkpoint(CheckpointFolder(cut).newest_state())["epoch"]
    assert newest <= 4
    tail = run(make_trainer(synthetic_root, **values), cut, every)
    assert head[:newest] + tail == straight


def test_the_free_space_check_bounds_every_state_a_run_writes(synthetic_root, tmp_path):
    from tuner.tune.preflight import state_bytes

    values = {"stage": "both", "stage1": {"epochs": 1}, "epochs": 2}
    trainer = make_trainer(synthetic_root, **values)
    run(trainer, tmp_path, every=1)
    written = max(path.stat().st_size for path in tmp_path.glob("state-e*.pt"))
    config = TrainConfig.from_trial(tiny_config_values(**values))
    bound = state_bytes([config], len(trainer.classes))
    assert written <= bound < 2 * written  # an upper bound, and a close one


def test_a_failed_write_is_raised_in_the_training_loop(synthetic_root, tmp_path, monkeypatch):
    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tuner.training.checkpoints.writer.save_checkpoint", full_disk)
    with pytest.raises(CheckpointError, match="No space left on device"):
        run(make_trainer(synthetic_root), tmp_path, every=1)


def test_under_auto_a_slow_write_never_stalls_the_loop(synthetic_root, tmp_path, monkeypatch):
    """Once a state is complete on disk, a checkpoint due while the previous write still runs
    moves to a later epoch; the end of the run waits for the write."""
    import tuner.training.checkpoints.writer as checkpointing

    write = checkpointing.save_checkpoint
    calls: list[Path] = []

    def slow_after_the_first_state(state: dict, path: Path) -> Path:
        calls.append(path)
        if any(p.name.startswith("state-") for p in calls[:-1]):
            time.sleep(0.6)  # a slow or busy disk
        return write(state, path)

    monkeypatch.setattr(checkpointing, "save_checkpoint", slow_after_the_first_state)
    trainer = make_trainer(synthetic_root, epochs=4, bn_calibration="off")
    checkpoints = RunCheckpoints(trainer, CheckpointFolder(tmp_path), CheckpointPolicy("auto"))
    blocked = []
    for _ in trainer.run():
        done = trainer.finished
        # long epochs: every epoch is due under auto
        blocked.append(checkpoints.after_epoch(100.0, stage_end=done, last=done)[0])
        if len(blocked) == 1:
            checkpoints._writer.wait()  # the first state lands before epoch 2
    checkpoints.close(wait=True)
    assert blocked[2] < 0.3  # epoch 2's write still ran: moved on
    assert blocked[-1] >= 0.6  # the end waits
    assert CheckpointFolder(tmp_path).newest_state() == tmp_path / "state-e00004.pt"


def test_a_resume_against_other_frozen_weights_is_refused(synthetic_root, tmp_path):
    from models import create_model

    weights = tmp_path / "backbone.pt"
    torch.manual_seed(0)
    state_dict = create_model("ego_rnn", backbone="resnet18", num_classes=4).backbone.state_dict()
    torch.save(state_dict, weights)
    trainer = make_trainer(synthetic_root, epochs=1, weights=str(weights))
    run(trainer, tmp_path / "run", every=1)
    state = load_checkpoint(tmp_path / "run" / "state-e00001.pt")
    torch.save({k: v + 1 for k, v in state_dict.items()}, weights)  # the file changed since
    with pytest.raises(CheckpointError, match=r"other frozen weights \(weights differ"):
        make_trainer(synthetic_root, epochs=1, weights=str(weights)).load_state_dict(state)
