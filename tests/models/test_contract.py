"""One contract for every registered model: shapes, finiteness, stage gradients, determinism."""

from __future__ import annotations

import pytest
import torch

from models import create_model, list_models, set_stage_mode, stage_param_groups
from tests.models.conftest import CLASSES, MEM, B, T, build_small, run_model

STAGED = ("ego_rnn", "ego_rnn_ms", "ego_rnn_ms_sd", "ego_rnn_repflow")
L5 = 2  # conv5 map side at 64 px
EXPECTED_SHAPES = {
    "ego_rnn": {"logits": (B, CLASSES), "features": (B, MEM)},
    "ego_rnn_ms": {"logits": (B, CLASSES), "features": (B, MEM), "ms": (B, T, 2, L5, L5)},
    "ego_rnn_ms_sd": {"logits": (B, CLASSES), "features": (B, MEM), "ms": (B, T, 2, L5, L5)},
    "ego_rnn_repflow": {"logits": (B, CLASSES), "features": (B, MEM)},
    "flow_resnet34": {"logits": (B, CLASSES), "features": (B, 512)},
    "two_stream": {"logits": (B, CLASSES), "features": (B, 512 + MEM)},
}
STAGE_CASES = [(n, s) for n in list_models() for s in ((1, 2) if n in STAGED else (1,))]


def test_every_registered_model_has_a_contract_entry():
    assert set(EXPECTED_SHAPES) == set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_outputs_have_the_documented_shapes_and_are_finite(name, rgb, flow):
    model = build_small(name)
    model.train()
    out = run_model(name, model, rgb, flow)
    assert {k: tuple(v.shape) for k, v in out.items()} == EXPECTED_SHAPES[name]
    assert all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize(("name", "stage"), STAGE_CASES)
def test_backward_reaches_exactly_the_stage_parameters(name, stage, rgb, flow):
    model = build_small(name)
    model.train()
    set_stage_mode(model, stage)
    out = run_model(name, model, rgb, flow)
    loss = sum(v.sum() for v in out.values())
    if name == "ego_rnn_ms_sd":
        loss = loss + model.discriminate(rgb).sum()
    loss.backward()
    trainable = {id(p) for g in stage_param_groups(model, stage) for p in g["params"]}
    reached = {n for n, p in model.named_parameters() if p.grad is not None}
    expected = {n for n, p in model.named_parameters() if id(p) in trainable}
    assert reached == expected
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", list_models())
def test_evaluation_is_deterministic(name, rgb, flow):
    model = build_small(name)
    model.eval()
    with torch.no_grad():
        first = run_model(name, model, rgb, flow)
        second = run_model(name, model, rgb, flow)
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("name", list_models())
def test_default_model_trains_a_step_on_a_tiny_clip(name):
    """create_model(name) alone: ResNet-34, 512-channel ConvLSTM, 61 classes, 224 px."""
    torch.manual_seed(0)
    model = create_model(name)
    model.train()
    set_stage_mode(model, 2)
    rgb, flow = torch.randn(1, 2, 3, 224, 224), torch.randn(1, 10, 224, 224)
    out = run_model(name, model, rgb, flow)
    assert out["logits"].shape == (1, 61)
    torch.nn.functional.cross_entropy(out["logits"], torch.tensor([3])).backward()
    grads = [p.grad for g in stage_param_groups(model, 2) for p in g["params"]]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
