"""Two-stream model: built branches, fused features, branch checkpoints."""

from __future__ import annotations

import torch

from models import create_model
from tests.models.conftest import CLASSES, MEM, build_small


def _branches() -> tuple[torch.nn.Module, torch.nn.Module]:
    return build_small("ego_rnn"), build_small("flow_resnet34")


def test_receives_the_built_branches():
    rgb_model, flow_model = _branches()
    model = create_model("two_stream", rgb_model=rgb_model, flow_model=flow_model)
    assert model.rgb is rgb_model
    assert model.flow is flow_model
    assert model.classifier[1].in_features == 512 + MEM


def test_features_are_flow_features_then_rgb_features(rgb, flow):
    model = build_small("two_stream").eval()
    with torch.no_grad():
        out = model(rgb, flow)
        expected = torch.cat([model.flow(flow)["features"], model.rgb(rgb)["features"]], dim=1)
    torch.testing.assert_close(out["features"], expected)
    assert out["logits"].shape == (rgb.shape[0], CLASSES)


def test_each_branch_loads_from_its_own_checkpoint_state_dict_or_file(tmp_path):
    rgb_source, flow_source = _branches()
    with torch.no_grad():  # trained branches differ from a fresh build
        for param in [*rgb_source.parameters(), *flow_source.parameters()]:
            param.add_(0.5)
    torch.save(flow_source.state_dict(), tmp_path / "flow.pth")
    model = build_small(
        "two_stream", rgb_checkpoint=rgb_source.state_dict(), flow_checkpoint=tmp_path / "flow.pth"
    )
    fresh = build_small("two_stream")
    for branch, source in ((model.rgb, rgb_source), (model.flow, flow_source)):
        mine, theirs = branch.state_dict(), source.state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    assert not torch.equal(fresh.flow.conv1.weight, model.flow.conv1.weight)
