"""The ResNet backbone: taps, the no-BN conv5, the ImageNet logits, the stage-2 convolutions."""

from __future__ import annotations

import pytest
import torch
import torchvision

from models import ResNetBackbone, tap_size

CHANNELS = {
    "resnet18": (128, 256, 512),
    "resnet34": (128, 256, 512),
    "resnet50": (512, 1024, 2048),
}


@pytest.mark.parametrize("arch", sorted(CHANNELS))
def test_taps_are_layer2_layer3_layer4_with_their_channels_and_sizes(arch):
    torch.manual_seed(0)
    out = ResNetBackbone(arch).eval()(torch.randn(2, 3, 64, 64))
    c3, c4, c5 = CHANNELS[arch]
    assert out.conv3.shape == (2, c3, 8, 8)
    assert out.conv4.shape == (2, c4, 4, 4)
    assert out.conv5.shape == out.conv5_nobn.shape == (2, c5, 2, 2)
    assert out.logits.shape == (2, 1000)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_conv5_and_logits_equal_torchvision_with_the_same_weights(arch):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, arch)(weights=None).eval()
    backbone = ResNetBackbone(arch).eval()
    backbone.load_state_dict(reference.state_dict())
    frames = torch.randn(2, 3, 64, 64)
    out = backbone(frames)
    with torch.no_grad():
        conv5 = reference.layer4(reference.layer3(out.conv3))
        torch.testing.assert_close(out.logits, reference(frames))
    torch.testing.assert_close(out.conv5, conv5)


def test_nobn_output_of_basic_block_is_conv2_plus_residual():
    torch.manual_seed(0)
    backbone = ResNetBackbone("resnet34").eval()
    out = backbone(torch.randn(2, 3, 64, 64))
    block = backbone.layer4[-1]
    x = backbone.layer4[:-1](out.conv4)
    expected = block.conv2(block.relu(block.bn1(block.conv1(x)))) + x  # no bn2, no ReLU
    torch.testing.assert_close(out.conv5_nobn, expected)
    assert (out.conv5_nobn < 0).any()  # really before the ReLU


def test_nobn_output_of_bottleneck_is_conv3_plus_residual():
    torch.manual_seed(0)
    backbone = ResNetBackbone("resnet50").eval()
    out = backbone(torch.randn(1, 3, 64, 64))
    block = backbone.layer4[-1]
    x = backbone.layer4[:-1](out.conv4)
    mid = block.relu(block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x))))))
    torch.testing.assert_close(out.conv5_nobn, block.conv3(mid) + x)


@pytest.mark.parametrize(
    ("arch", "names"),
    [
        ("resnet34", [f"layer4.{b}.conv{c}" for b in range(3) for c in (1, 2)]),
        ("resnet50", [f"layer4.{b}.conv{c}" for b in range(3) for c in (1, 2, 3)]),
    ],
)
def test_layer4_convs_are_the_residual_branch_convolutions(arch, names):
    backbone = ResNetBackbone(arch)
    by_module = {module: name for name, module in backbone.named_modules()}
    assert [by_module[conv] for conv in backbone.layer4_convs()] == names


@pytest.mark.parametrize("size", [64, 100, 112, 224])
def test_tap_size_matches_the_real_feature_maps(size):
    out = ResNetBackbone("resnet18").eval()(torch.zeros(1, 3, size, size))
    assert [tap_size(size, tap) for tap in ("conv3", "conv4", "conv5")] == [
        out.conv3.shape[-1],
        out.conv4.shape[-1],
        out.conv5.shape[-1],
    ]


def test_tap_size_at_224_is_28_14_7():
    assert [tap_size(224, t) for t in ("conv3", "conv4", "conv5")] == [28, 14, 7]
