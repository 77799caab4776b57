"""Loaders made once per run: the same metrics as the per-epoch loaders of earlier versions,
loader processes forked once, exact resumes through repositioned workers, validation cached."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import tuner.training.engine as engine
from data_pipeline import DatasetError, discover
from tests.conftest import tiny_config_values
from tuner.training.checkpoints.files import load_checkpoint, save_checkpoint
from tuner.training.config import TrainConfig
from tuner.training.engine import TIME_FIELDS, Trainer, epoch_order

# a model with dropout (its masks come from the global generator on the CPU), both stages
VALUES = {"model": "ego_rnn", "stage": "both", "stage1": {"epochs": 1}, "epochs": 2}


def metrics(records) -> list[dict]:
    return [{k: v for k, v in r.to_dict().items() if k not in TIME_FIELDS} for r in records]


def make_trainer(root: Path, **overrides: object) -> Trainer:
    config = TrainConfig.from_dict(tiny_config_values(**{**VALUES, **overrides}))
    return Trainer(config, discover(root))


class EarlierLoaders:
    """The loading of earlier versions, as the reference: a DataLoader made for every epoch
    (training and validation) over the dataset with its epoch set, in the same data order."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def loader(self, dataset, epoch: int, *, train: bool) -> DataLoader:
        cfg = self.trainer.config
        dataset.set_epoch(epoch)
        order = epoch_order(cfg.seed, len(dataset), epoch) if train else None
        return DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            sampler=order,
            num_workers=cfg.num_workers,
            drop_last=train and cfg.drop_last and len(dataset) > cfg.batch_size,
        )

    def train_epoch(self, epoch: int) -> Iterator[dict]:
        return iter(self.loader(self.trainer.train_set, epoch, train=True))

    def validation(self) -> Iterator[dict]:
        for batch in self.loader(self.trainer.val_set, 0, train=False):
            yield self.trainer._move(batch)


def test_metrics_equal_the_per_epoch_loaders_of_earlier_versions(synthetic_root, monkeypatch):
    runs = {}
    for kind in ("earlier", "now"):
        if kind == "earlier":
            # an earlier loader draws its worker seed from the global generator itself
            monkeypatch.setattr(engine, "emulate_loader_seed_draw", lambda: None)
        trainer = make_trainer(synthetic_root, num_workers=2, bn_calibration="off")
        if kind == "earlier":
            earlier = EarlierLoaders(trainer)
            monkeypatch.setattr(trainer._train_stream, "epoch", earlier.train_epoch)
            monkeypatch.setattr(trainer, "_validation_batches", earlier.validation)
        runs[kind] = metrics(trainer.run())
        trainer.close()
        monkeypatch.undo()
    assert len(runs["now"]) == 3
    assert runs["now"] == runs["earlier"]


def fork_log(tmp_path: Path) -> Path:
    """A folder that holds a file per process this process forks from now on, while the folder
    exists."""
    folder = tmp_path / "forks"
    folder.mkdir()
    parent = os.getpid()

    def note() -> None:
        if os.getppid() == parent and folder.is_dir():
            (folder / str(os.getpid())).touch()

    os.register_at_fork(after_in_child=note)
    return folder


def test_a_run_forks_its_loader_processes_once_not_per_epoch(synthetic_root, tmp_path):
    forks = fork_log(tmp_path)
    trainer = make_trainer(synthetic_root, num_workers=2, epochs=3)  # with BN calibration
    records = list(trainer.run())
    trainer.close()
    assert len(records) == 4
    # two training workers for the calibration pass and every epoch, two validation workers
    # for the first validation (the later ones read the cached batches)
    forked = len(list(forks.iterdir()))
    shutil.rmtree(forks)
    assert forked == 4


def test_a_resume_repositions_persistent_workers_exactly(synthetic_root, tmp_path):
    straight = make_trainer(synthetic_root, num_workers=2)
    expected = metrics(straight.run())
    straight.close()
    first = make_trainer(synthetic_root, num_workers=2)
    head = metrics(first.run(max_epochs=2))  # its workers already make epoch 3's batches
    save_checkpoint(first.state_dict(), tmp_path / "latest.pt")
    first.close()
    second = make_trainer(synthetic_root, num_workers=2)  # calibrated: its workers stand at 1
    second.load_state_dict(load_checkpoint(tmp_path / "latest.pt"))
    assert head + metrics(second.run()) == expected
    second.close()


def test_an_epoch_left_unfinished_is_read_again_from_its_start(synthetic_root):
    trainer = make_trainer(synthetic_root, num_workers=2, bn_calibration="off")
    stream = trainer._train_stream
    whole = [i for batch in stream.epoch(1) for i in batch["index"].tolist()]
    next(iter(stream.epoch(2)))  # one batch of epoch 2, then abandoned
    assert [i for batch in stream.epoch(1) for i in batch["index"].tolist()] == whole
    again = [i for batch in stream.epoch(2) for i in batch["index"].tolist()]
    assert sorted(again) == sorted(whole)
    assert again != whole  # another epoch, another order
    trainer.close()


def test_validation_beyond_the_cache_budget_is_read_every_epoch(synthetic_root, monkeypatch):
    monkeypatch.setitem(engine.VAL_CACHE_BYTES, "cpu", 0)
    uncached = make_trainer(synthetic_root, num_workers=1, bn_calibration="off")
    streamed = metrics(uncached.run())
    assert uncached._val_cache is None and uncached._val_stream is not None
    uncached.close()
    monkeypatch.undo()
    cached = make_trainer(synthetic_root, num_workers=1, bn_calibration="off")
    assert metrics(cached.run()) == streamed
    assert cached._val_cache is not None and cached._val_stream is None
    cached.close()


def test_a_loader_worker_error_is_raised_in_the_training_loop(synthetic_root, tmp_path):
    root = shutil.copytree(synthetic_root, tmp_path / "GTEA61")
    trainer = make_trainer(root, num_workers=2, bn_calibration="off", frame_store="off")
    broken = trainer.train_set.videos[0]
    for path in broken.rgb:  # the frames vanish after the run started
        path.unlink()
    with pytest.raises(DatasetError, match=broken.rgb[0].name):
        list(trainer.run(max_epochs=1))
    trainer.close()


# -- the CUDA preparation path, taken on the CPU -------------------------------------------------
PREPARED = [
    ("ego_rnn", "1", {}),
    ("ego_rnn", "2", {}),
    ("ego_rnn_ms", "1", {}),
    ("ego_rnn_ms", "2", {"ms_layer": "conv4"}),
    ("ego_rnn_ms_sd", "1", {}),
    ("ego_rnn_ms_sd", "2", {}),
    ("ego_rnn_repflow", "1", {"repflow_iters": 2}),
    ("ego_rnn_repflow", "2", {"repflow_iters": 2}),
    ("two_stream", "1", {}),
    ("flow_resnet34", "1", {}),
]


@pytest.mark.parametrize(
    ("model", "stage", "extra"), PREPARED, ids=[f"{m}-s{s}" for m, s, _ in PREPARED]
)
def test_every_model_and_stage_trains_through_the_cuda_preparation(
    synthetic_root, model, stage, extra
):
    """channels_last weights and bf16 autocast, as a CUDA run prepares them (the
    representation-flow model's 3-D convolutions once made the memory-format step fail)."""
    from tuner.training.device import DevicePlan

    values = tiny_config_values(
        model=model, stage=stage, precision="bf16", channels_last=True, epochs=1, **extra
    )
    config = TrainConfig.from_dict(values)
    plan = DevicePlan.for_config(config, torch.device("cpu"), as_on_cuda=True)
    assert plan.channels_last and plan.autocast_dtype is torch.bfloat16
    trainer = Trainer(config, discover(synthetic_root), plan=plan)
    convolutions = [p for p in trainer.model.parameters() if p.dim() == 4]
    assert convolutions and all(
        p.is_contiguous(memory_format=torch.channels_last) for p in convolutions
    )
    trained = {
        n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad
    }
    (record,) = list(trainer.run())
    trainer.close()
    assert torch.isfinite(torch.tensor([record.train_loss, record.val_loss])).all()
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(after[n], before) for n, before in trained.items())


# -- compile ------------------------------------------------------------------------------------
def compiled_trainer(root: Path, **overrides: object) -> Trainer:
    """A run whose modules are compiled: dynamo's graph capture and AOTAutograd as on a GPU,
    without generating kernels (``aot_eager``), which takes a minute per model on this CPU."""
    from tuner.training.device import DevicePlan

    config = TrainConfig.from_dict(
        tiny_config_values(**{**VALUES, "compile": "reduce-overhead", **overrides})
    )
    plan = DevicePlan.for_config(config, torch.device("cpu"))
    assert plan.compile_mode == "reduce-overhead"  # its step marks run as on a GPU
    plan = dataclasses.replace(plan, compile_backend="aot_eager")
    return Trainer(config, discover(root), plan=plan)


def test_a_compiled_run_computes_the_eager_metrics_and_resumes_exactly(synthetic_root, tmp_path):
    eager = make_trainer(synthetic_root, bn_calibration="off")
    expected = metrics(eager.run())
    first = compiled_trainer(synthetic_root, bn_calibration="off")
    head = metrics(first.run(max_epochs=2))
    state = first.state_dict()
    assert set(state["model"]) <= set(eager.model.state_dict())  # interchangeable checkpoints
    save_checkpoint(state, tmp_path / "latest.pt")
    second = compiled_trainer(synthetic_root, bn_calibration="off")
    second.load_state_dict(load_checkpoint(tmp_path / "latest.pt"))
    assert head + metrics(second.run()) == expected
