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


def test_representation_flow_layer_trains_in_stage2_only():
    model = build_small("ego_rnn_repflow", repflow_iters=2)
    trained = set().union(*_names(model, 2).values())
    assert _all(model, ("repflow.",)) <= trained
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


# -- the MS head's tap decides which backbone layers stage 2 trains (report §4.3.1) -----------

_LAYERS_BELOW_CONV5 = {"conv5": (), "conv4": ("layer3",), "conv3": ("layer2", "layer3")}


def _residual_convs(model: nn.Module, layer: str) -> set[str]:
    return {
        n
        for n, _ in model.named_parameters()
        if n.startswith(f"backbone.{layer}.") and ".conv" in n and "downsample" not in n
    }


@pytest.mark.parametrize("tap", ["conv5", "conv4", "conv3"])
def test_ms_stage2_trains_the_layers_from_the_tap_up_to_conv5(tap):
    model = build_small("ego_rnn_ms", ms_layer=tap)
    trained = _names(model, 2)["main"]
    for layer in ("layer2", "layer3"):
        convs = _residual_convs(model, layer)
        assert convs
        assert (convs <= trained) == (layer in _LAYERS_BELOW_CONV5[tap])
        assert not convs & _names(model, 1)["main"]
    assert not any(".bn" in n or "downsample" in n for n in trained if ".layer" in n)
    assert _layer4_convs("backbone.", 2) <= trained


@pytest.mark.parametrize(("tap", "layer"), [("conv4", "layer3"), ("conv3", "layer2")])
def test_the_ms_loss_alone_reaches_the_tapped_layer(tap, layer):
    from models import ms_loss

    model = build_small("ego_rnn_ms", ms_layer=tap)
    model.train()
    set_stage_mode(model, 2)
    assert not any(isinstance(m, nn.BatchNorm2d) and m.training for m in model.modules())
    clip = torch.randn(2, 3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    out = model(clip)
    side = out["ms"].shape[-1]
    target = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(5)) > 0.5
    ms_loss(out["ms"], target.float()).backward()
    params = dict(model.named_parameters())
    for name in _residual_convs(model, layer):
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name
    # the MS loss never reaches conv5, the ConvLSTM or the classifier
    untouched = _layer4_convs("backbone.", 2) | _all(model, LSTM_AND_CLASSIFIER)
    assert all(params[n].grad is None or not params[n].grad.any() for n in untouched)


def test_ms_head_is_conv_relu_dropout_linear_with_the_reports_dropout():
    for tap, rate in (("conv5", 0.5), ("conv4", 0.2), ("conv3", 0.2)):
        head = build_small("ego_rnn_ms", ms_layer=tap).ms_head
        assert [type(m).__name__ for m in head.children()] == [
            "Conv2d",
            "ReLU",
            "Dropout",
            "Linear",
        ]
        assert head.dropout.p == rate
    assert build_small("ego_rnn_ms", ms_dropout=0.0).ms_head.dropout.p == 0.0


def test_ms_head_dropout_is_active_in_training_only():
    model = build_small("ego_rnn_ms", ms_dropout=0.5)
    features = torch.rand(4, 512, 2, 2)
    model.ms_head.train()
    assert not torch.equal(model.ms_head(features), model.ms_head(features))
    model.ms_head.eval()
    assert torch.equal(model.ms_head(features), model.ms_head(features))


def test_representation_flow_tvl1_parameters_only_are_in_the_repflow_group():
    model = build_small("ego_rnn_repflow", repflow_iters=2)
    groups = _names(model, 2)
    assert groups["repflow"] == _all(model, ("repflow.tvl1.",))
    rest = _all(model, ("repflow.bottleneck.", "repflow.expand.", "repflow.bn."))
    assert rest and rest <= groups["main"]
