"""The training engine on the synthetic dataset: losses fall, stages freeze, resumes are exact."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from data_pipeline import discover
from models import stage_param_groups
from tests.conftest import tiny_config_values
from tuner.errors import EgotuneError
from tuner.training.checkpoints.files import CheckpointError, load_checkpoint, save_checkpoint
from tuner.training.config import TrainConfig
from tuner.training.engine import TIME_FIELDS, Trainer

MODELS_BY_FAMILY = {
    "rgb": ("ego_rnn", {}),
    "flow": ("flow_resnet34", {"batch_size": 4}),
    "two_stream": ("two_stream", {}),
    "ms": ("ego_rnn_ms", {"ms_layer": "conv4"}),
    "sd": ("ego_rnn_ms_sd", {}),
    "repflow": ("ego_rnn_repflow", {"repflow_iters": 2}),
}


def make_trainer(root: Path, **overrides: object) -> Trainer:
    return Trainer(TrainConfig.from_dict(tiny_config_values(**overrides)), discover(root))


def without_time(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIME_FIELDS}


@pytest.mark.parametrize("family", sorted(MODELS_BY_FAMILY))
def test_training_steps_lower_the_loss(synthetic_root, family):
    model, extra = MODELS_BY_FAMILY[family]
    stage = "1" if model in ("flow_resnet34", "two_stream") else "2"
    trainer = make_trainer(
        synthetic_root, model=model, stage=stage, lr=1e-3, optimizer="adam", **extra
    )
    batch = trainer.first_training_batch()
    trainer.model.train()
    losses = []
    for _ in range(8):
        trainer.optimizer.zero_grad()
        out = trainer.recipe.step(trainer.model, batch, trainer.config, trainer.stage, True)
        out.loss.backward()
        trainer.optimizer.step()
        losses.append(float(out.loss))
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-2:]) < sum(losses[:2])


@pytest.mark.parametrize("model", ["ego_rnn", "ego_rnn_ms", "two_stream", "flow_resnet34"])
@pytest.mark.parametrize("stage", [1, 2])
def test_optimizer_groups_hold_exactly_the_stage_parameters(synthetic_root, model, stage):
    trainer = make_trainer(synthetic_root, model=model, stage=str(stage))
    expected = {
        id(p) for group in stage_param_groups(trainer.model, trainer.stage) for p in group["params"]
    }
    in_optimizer = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert in_optimizer == expected
    trainable = {id(p) for p in trainer.model.parameters() if p.requires_grad}
    assert trainable == expected


def test_two_stream_flow_group_has_its_own_learning_rate(synthetic_root):
    trainer = make_trainer(synthetic_root, model="two_stream", stage="1", lr=1e-2, lr_flow=1e-4)
    rates = {group["name"]: group["lr"] for group in trainer.optimizer.param_groups}
    assert rates == {"main": 1e-2, "flow": 1e-4}


def test_epoch_records_carry_the_report_fields(synthetic_root):
    trainer = make_trainer(synthetic_root, model="ego_rnn_ms", stage="2", epochs=1)
    (record,) = list(trainer.run())
    fields = record.to_dict()
    for key in ("epoch", "stage", "train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        assert key in fields
    assert {"ms_loss", "seconds", "clips_per_s", "best_val_acc", "best_epoch"} <= set(fields)
    assert 0.0 <= fields["val_acc"] <= 100.0
    assert fields["best_epoch"] == 1


def test_multistep_schedule_steps_at_epoch_end(synthetic_root):
    trainer = make_trainer(synthetic_root, epochs=3, lr=1e-3, milestones=[1, 2], gamma=0.5)
    lrs = [record.lr for record in trainer.run()]
    assert lrs == pytest.approx([1e-3, 5e-4, 2.5e-4])


def test_same_seed_same_metrics(synthetic_root):
    first = [without_time(r.to_dict()) for r in make_trainer(synthetic_root, epochs=2).run()]
    second = [without_time(r.to_dict()) for r in make_trainer(synthetic_root, epochs=2).run()]
    assert first == second


def test_resume_is_exact(synthetic_root, tmp_path):
    straight = [without_time(r.to_dict()) for r in make_trainer(synthetic_root, epochs=3).run()]
    interrupted = make_trainer(synthetic_root, epochs=3)
    head = [without_time(r.to_dict()) for r in interrupted.run(max_epochs=2)]
    save_checkpoint(interrupted.state_dict(), tmp_path / "latest.pt")
    resumed = make_trainer(synthetic_root, epochs=3)
    resumed.load_state_dict(load_checkpoint(tmp_path / "latest.pt"))
    tail = [without_time(r.to_dict()) for r in resumed.run()]
    assert head + tail == straight


def test_stage_both_starts_stage_two_from_the_best_stage_one_state(synthetic_root):
    trainer = make_trainer(synthetic_root, stage="both", stage1={"epochs": 2}, epochs=1)
    records = list(trainer.run())
    assert [(r.stage, r.stage_epoch, r.epoch) for r in records] == [(1, 1, 1), (1, 2, 2), (2, 1, 3)]
    assert records[2].lr == pytest.approx(1e-4)  # stage-2 defaults of the report
    assert records[0].lr == pytest.approx(1e-3)


def test_resume_across_the_stage_boundary_is_exact(synthetic_root, tmp_path):
    values = {"stage": "both", "stage1": {"epochs": 2}, "epochs": 1}
    straight = [without_time(r.to_dict()) for r in make_trainer(synthetic_root, **values).run()]
    first = make_trainer(synthetic_root, **values)
    head = [without_time(r.to_dict()) for r in first.run(max_epochs=2)]
    save_checkpoint(first.state_dict(), tmp_path / "latest.pt")
    second = make_trainer(synthetic_root, **values)
    second.load_state_dict(load_checkpoint(tmp_path / "latest.pt"))
    assert head + [without_time(r.to_dict()) for r in second.run()] == straight


def test_stage_two_starts_from_a_stage_one_checkpoint(synthetic_root, tmp_path):
    stage1 = make_trainer(synthetic_root, stage="1", epochs=1)
    list(stage1.run())
    path = save_checkpoint(stage1.state_dict(), tmp_path / "stage1.pt")
    stage2 = make_trainer(synthetic_root, stage="2", init_checkpoint=str(path))
    lstm = {k: v for k, v in stage1.model.state_dict().items() if "lstm" in k}
    assert lstm
    loaded = stage2.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in lstm.items())


def test_resume_refuses_a_checkpoint_of_another_configuration(synthetic_root, tmp_path):
    trainer = make_trainer(synthetic_root, epochs=1)
    list(trainer.run())
    save_checkpoint(trainer.state_dict(), tmp_path / "latest.pt")
    other = make_trainer(synthetic_root, epochs=1, lr=5e-4)
    with pytest.raises(CheckpointError, match="lr"):
        other.load_state_dict(load_checkpoint(tmp_path / "latest.pt"))


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "latest.pt"
    save_checkpoint({"model": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"latest\.pt.*corrupt or truncated"):
        load_checkpoint(path)


def test_a_non_finite_loss_stops_training_with_a_clear_error(synthetic_root):
    trainer = make_trainer(synthetic_root, epochs=1)
    with torch.no_grad():
        trainer.model.classifier[1].weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite training loss at epoch 1"):
        list(trainer.run())


def test_frame_store_trains_to_the_records_of_png_decoding(synthetic_root, tmp_path):
    runs = {}
    for store in ("on", "off"):
        trainer = make_trainer(
            synthetic_root,
            model="ego_rnn_ms",
            stage="1",
            epochs=1,
            bn_calibration="off",
            frame_store=store,
            frame_store_dir=str(tmp_path / "frames"),
        )
        assert (trainer.store is not None) == (store == "on")
        runs[store] = [without_time(r.to_dict()) for r in trainer.run()]
    assert runs["on"] == runs["off"]
    kinds = sorted(p.name for p in (tmp_path / "frames").glob("*/*.u8"))
    assert kinds == ["mmaps.u8", "rgb.u8"]


def test_frame_store_that_cannot_be_built_falls_back_or_stops(synthetic_root, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    settings = {"frame_store_dir": str(blocker / "frames"), "bn_calibration": "off"}
    with pytest.warns(UserWarning, match="decoding PNG files instead"):
        trainer = make_trainer(synthetic_root, frame_store="auto", **settings)
    assert trainer.store is None
    with pytest.raises(EgotuneError, match=r"frame_store: .*a-file"):
        make_trainer(synthetic_root, frame_store="on", **settings)


def test_representation_flow_tvl1_group_runs_at_a_hundredth_of_the_base_rate(synthetic_root):
    trainer = make_trainer(
        synthetic_root, model="ego_rnn_repflow", repflow_iters=2, stage="2", lr=1e-3
    )
    rates = {group["name"]: group["lr"] for group in trainer.optimizer.param_groups}
    assert rates == pytest.approx({"main": 1e-3, "repflow": 1e-5})
    (repflow,) = [g for g in trainer.optimizer.param_groups if g["name"] == "repflow"]
    assert {id(p) for p in repflow["params"]} == {
        id(p) for p in trainer.model.repflow.tvl1.parameters()
    }
    scaled = make_trainer(
        synthetic_root, model="ego_rnn_repflow", repflow_iters=2, lr=1e-3, lr_repflow_scale=1.0
    )
    assert {g["lr"] for g in scaled.optimizer.param_groups} == {1e-3}


def _tied_trainer(root: Path, monkeypatch: pytest.MonkeyPatch, accuracies: list[float], **values):
    """A trainer whose validation reports ``accuracies`` in turn; returns it and the weights of
    every epoch (by global epoch) as they stood when validated."""
    trainer = make_trainer(root, **values)
    accs, weights = iter(accuracies), {}
    evaluate = trainer._evaluate

    def scripted() -> dict:
        result = evaluate()
        weights[len(weights) + 1] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        return {**result, "acc": next(accs)}

    monkeypatch.setattr(trainer, "_evaluate", scripted)
    return trainer, weights


def _same(a: dict, b: dict, prefix: str) -> bool:
    keys = [k for k in a if k.startswith(prefix)]
    return bool(keys) and all(torch.equal(a[k], b[k]) for k in keys)


def test_stage_both_hands_on_the_first_of_tied_best_epochs(synthetic_root, monkeypatch):
    values = {"stage": "both", "stage1": {"epochs": 3, "lr": 1e-2}, "epochs": 1}
    trainer, weights = _tied_trainer(synthetic_root, monkeypatch, [40.0, 60.0, 60.0, 5.0], **values)
    entered = {}
    enter = trainer._enter_stage

    def record_entry(stage: int) -> None:
        entered[stage] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        enter(stage)

    monkeypatch.setattr(trainer, "_enter_stage", record_entry)
    records = list(trainer.run())
    assert [(r.stage, r.best_epoch) for r in records] == [(1, 1), (1, 2), (1, 2), (2, 4)]
    assert not _same(weights[2], weights[3], "lstm_cell.")  # epoch 3 trained on
    assert _same(entered[2], weights[2], "lstm_cell.")
    assert _same(entered[2], weights[2], "classifier.")


def test_best_weights_checkpoint_is_the_first_of_tied_best_epochs(synthetic_root, monkeypatch):
    from tuner.training.engine import best_weights_checkpoint

    values = {"stage": "2", "epochs": 3, "lr": 1e-2, "model": "ego_rnn_ms"}
    trainer, weights = _tied_trainer(synthetic_root, monkeypatch, [50.0, 70.0, 70.0], **values)
    list(trainer.run())
    handed = best_weights_checkpoint(trainer.state_dict(), trainer.model.state_dict())
    assert (handed["epoch"], handed["val_acc"], handed["stage"]) == (2, 70.0, 2)
    assert set(handed["model"]) == set(weights[2])
    assert all(torch.equal(handed["model"][k], v) for k, v in weights[2].items())
    assert not _same(handed["model"], weights[3], "backbone.layer4.")
