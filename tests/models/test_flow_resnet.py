"""flow_resnet34: cross-modality conv1 initialisation, features, segment averaging."""

from __future__ import annotations

import pytest
import torch
import torchvision

from models import FlowResNet, average_segment_logits
from tests.models.conftest import CLASSES, SIZE, build_small


@pytest.fixture
def imagenet_file(tmp_path):
    torch.manual_seed(7)
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, tmp_path / "resnet18.pth")
    return tmp_path / "resnet18.pth", state


def test_conv1_is_the_rgb_conv1_averaged_over_rgb_and_repeated(imagenet_file):
    path, state = imagenet_file
    model = FlowResNet(backbone="resnet18", weights=path, flow_stack=5)
    rgb_conv1 = state["conv1.weight"]  # (64, 3, 7, 7)
    assert model.conv1.weight.shape == (64, 10, 7, 7)
    for channel in range(10):
        torch.testing.assert_close(model.conv1.weight[:, channel], rgb_conv1.mean(dim=1))


def test_the_rest_of_the_backbone_is_copied_and_the_head_is_new(imagenet_file):
    path, state = imagenet_file
    model = FlowResNet(backbone="resnet18", weights=path, num_classes=CLASSES)
    assert torch.equal(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert torch.equal(model.bn1.running_var, state["bn1.running_var"])
    assert model.fc_action.weight.shape == (CLASSES, 512)


def test_logits_come_from_the_pre_dropout_features(flow):
    model = build_small("flow_resnet34").eval()
    with torch.no_grad():
        out = model(flow)
    torch.testing.assert_close(out["logits"], model.fc_action(out["features"]))


def test_segment_logits_are_the_mean_over_segments():
    model = build_small("flow_resnet34").eval()
    segments = torch.randn(2, 3, 10, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        averaged = average_segment_logits(model, segments)
        one_by_one = torch.stack([model(segments[:, s])["logits"] for s in range(3)], 1)
    torch.testing.assert_close(averaged, one_by_one.mean(dim=1), rtol=1e-4, atol=1e-5)


def test_a_stack_with_the_wrong_channel_count_is_refused():
    model = build_small("flow_resnet34", flow_stack=2)
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        model(torch.zeros(1, 10, SIZE, SIZE))
