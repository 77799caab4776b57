"""Stage parameter sets and train/eval modes, by parameter name (notes §4.1-4.2)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models import create_model, set_stage_mode, stage_param_groups
from tests.models.conftest import build_small

LSTM_AND_CLASSIFIER = ("lstm_cell.", "classifier.")


def _names(model: nn.Module, stage: int) -> dict[str, set[str]]:
    by_id = {id(p): n for n, p in model.named_parameters()}
    groups = stage_param_groups(model, stage)
    return {g["name"]: {by_id[id(p)] for p in g["params"]} for g in groups}


def _all(model: nn.Module, prefixes: tuple[str, ...]) -> set[str]:
    return {n for n, _ in model.named_parameters() if n.startswith(prefixes)}


def _layer4_convs(prefix: str, blocks: int, convs: tuple[int, ...] = (1, 2)) -> set[str]:
    return {f"{prefix}layer4.{b}.conv{c}.weight" for b in range(blocks) for c in convs}


def test_stage1_trains_the_convlstm_and_the_classifier():
    model = build_small("ego_rnn")
    assert _names(model, 1) == {"main": _all(model, LSTM_AND_CLASSIFIER)}


def test_stage2_adds_layer4_convolutions_and_the_fc_weight_on_resnet34():
    torch.manual_seed(0)
    model = create_model("ego_rnn")
    expected = _all(model, LSTM_AND_CLASSIFIER) | _layer4_convs("backbone.", 3)
    assert _names(model, 2) == {"main": expected | {"backbone.fc.weight"}}


def test_stage2_on_resnet50_trains_the_three_bottleneck_convolutions():
    model = build_small("ego_rnn", backbone="resnet50", cam=False)
    expected = _all(model, LSTM_AND_CLASSIFIER) | _layer4_convs("backbone.", 3, (1, 2, 3))
    assert _names(model, 2) == {"main": expected}


def test_without_cam_the_unused_fc_is_not_trained():
    model = build_small("ego_rnn", cam=False)
    assert not any(n.startswith("backbone.fc") for n in _names(model, 2)["main"])


@pytest.mark.parametrize(("name", "heads"), [("ego_rnn_ms", 1), ("ego_rnn_ms_sd", 2)])
def test_auxiliary_heads_train_in_stage2_only(name, heads):
    model = build_small(name)
    head_names = _all(model, ("ms_head.", "sd_head."))
    assert len({n.split(".")[0] for n in head_names}) == heads
    assert not head_names & _names(model, 1)["main"]
    assert head_names <= _names(model, 2)["main"]


def test_representation_flow_layer_has_its_own_group_in_stage2():
    model = build_small("ego_rnn_repflow", repflow_iters=2)
    groups = _names(model, 2)
    assert groups["repflow"] == _all(model, ("repflow.",))
    assert "repflow" not in _names(model, 1)


def test_two_stream_groups_are_main_and_the_whole_flow_layer4():
    model = build_small("two_stream")
    groups = _names(model, 1)
    rgb_stage2 = {"rgb.backbone.fc.weight"} | _layer4_convs("rgb.backbone.", 2)
    assert groups["main"] == _all(model, ("classifier.", "rgb.lstm_cell.")) | rgb_stage2
    assert groups["flow"] == _all(model, ("flow.layer4.",))
    assert any(".bn" in n for n in groups["flow"])


def test_flow_network_trains_every_parameter():
    model = build_small("flow_resnet34")
    assert _names(model, 1) == {"main": {n for n, _ in model.named_parameters()}}


def _training(model: nn.Module) -> set[str]:
    return {n for n, m in model.named_modules() if m.training and n}


def test_ego_rnn_modes_keep_every_batchnorm_in_eval():
    model = build_small("ego_rnn_ms")
    model.train()
    set_stage_mode(model, 2)
    assert not any(isinstance(m, nn.BatchNorm2d) and m.training for m in model.modules())
    assert {"lstm_cell", "classifier", "classifier.0", "ms_head"} <= _training(model)
    assert not model.backbone.training
    assert not model.backbone.layer4[0].training


def test_set_stage_mode_sets_requires_grad_to_the_stage_set():
    model = build_small("ego_rnn")
    set_stage_mode(model, 1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == _names(model, 1)["main"]


def test_two_stream_trains_only_the_classifier_and_flow_layer4_in_train_mode():
    model = build_small("two_stream")
    model.train()
    set_stage_mode(model, 1)
    top = {n for n in _training(model) if "." not in n.removeprefix("flow.")}
    assert top == {"classifier", "flow.layer4"}
    assert all(n.startswith(("classifier", "flow.layer4")) for n in _training(model))


def test_flow_network_trains_fully_with_batchnorm_in_train_mode():
    model = build_small("flow_resnet34")
    model.eval()
    set_stage_mode(model, 1)
    assert all(m.training for m in model.modules())


def test_representation_flow_batchnorm_trains_in_stage2():
    model = build_small("ego_rnn_repflow", repflow_iters=2)
    set_stage_mode(model, 2)
    assert model.repflow.bn.training
    assert not model.backbone.layer3[0].bn1.training


@pytest.mark.parametrize("stage", [0, 3, "both"])
def test_an_unknown_stage_is_refused(stage):
    with pytest.raises(ValueError, match="stage"):
        stage_param_groups(build_small("ego_rnn"), stage)


def test_a_module_without_stages_is_refused():
    with pytest.raises(TypeError, match="Linear"):
        set_stage_mode(nn.Linear(2, 2), 1)
