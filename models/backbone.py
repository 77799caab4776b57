"""ResNet backbone of the Ego-RNN family, with the taps the report's heads read.

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), in torchvision's
implementation (ResNet-18, -34 or -50), plus the Ego-RNN addition of Sudhakaran & Lanz,
"Attention is All We Need: Nailing Down Object-centric Attention for Egocentric Activity
Recognition" (BMVC 2018): the last block of layer4 also returns its output *without* its last
BatchNorm and ReLU (``conv_out + residual``), the features the CAM attention is applied to.

Taps follow the report's names: conv3 = layer2, conv4 = layer3, conv5 = layer4. Module names
equal torchvision's, so torchvision state dicts load with ``strict=True``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from models._weights import Weights, resolve_weights

__all__ = ["BACKBONES", "BackboneOutput", "ResNetBackbone", "build_resnet", "tap_size"]

BACKBONES = ("resnet18", "resnet34", "resnet50")
TAPS = ("conv3", "conv4", "conv5")
_TAP_STRIDE_STEPS = {"conv3": 3, "conv4": 4, "conv5": 5}


class BackboneOutput(NamedTuple):
    """Per-frame backbone outputs; N frames, e = 1 (ResNet-18/34) or 4 (ResNet-50)."""

    conv3: Tensor
    """layer2 output, (N, 128e, H/8, W/8)."""
    conv4: Tensor
    """layer3 output, (N, 256e, H/16, W/16)."""
    conv5: Tensor
    """layer4 output after its last BatchNorm and ReLU, (N, 512e, H/32, W/32)."""
    conv5_nobn: Tensor
    """layer4 output before its last BatchNorm and ReLU, (N, 512e, H/32, W/32)."""
    logits: Tensor
    """ImageNet logits of the backbone's own FC, (N, 1000)."""


def build_resnet(arch: str) -> torchvision.models.ResNet:
    """A randomly initialised torchvision ``arch`` (one of ``BACKBONES``)."""
    if arch not in BACKBONES:
        raise ValueError(f"backbone: must be one of {', '.join(BACKBONES)}; got {arch!r}")
    builder = getattr(torchvision.models, arch)
    net: torchvision.models.ResNet = builder(weights=None)
    return net


def tap_size(input_size: int, tap: str) -> int:
    """Side of the ``tap`` feature map for a square input of side ``input_size``.

    Every stride-2 step (conv1, max-pool, layer2, layer3, layer4) rounds up: 224 gives 28/14/7
    for conv3/conv4/conv5; sizes that are multiples of 32 give input_size // 8, // 16, // 32.
    """
    if tap not in TAPS:
        raise ValueError(f"ms_layer: must be one of {', '.join(TAPS)}; got {tap!r}")
    side = input_size
    for _ in range(_TAP_STRIDE_STEPS[tap]):
        side = (side + 1) // 2
    return side


class ResNetBackbone(nn.Module):
    """torchvision ResNet returning the conv3/conv4/conv5 taps, the no-BN conv5 and the logits."""

    def __init__(self, arch: str = "resnet34", weights: Weights = None) -> None:
        super().__init__()
        net = build_resnet(arch)
        self.arch = arch
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        self.avgpool, self.fc = net.avgpool, net.fc
        expansion = net.fc.in_features // 512
        self.tap_channels = {"conv3": 128 * expansion, "conv4": 256 * expansion}
        self.tap_channels["conv5"] = self.feature_channels = net.fc.in_features
        state = resolve_weights(arch, weights)
        if state is not None:
            self.load_state_dict(state)

    def to_conv3(self, frames: Tensor) -> Tensor:
        """Frames (N, 3, H, W) -> conv3 (layer2) features (N, 128e, H/8, W/8)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(frames))))
        return self.layer2(self.layer1(x))

    def from_conv3(self, conv3: Tensor) -> BackboneOutput:
        """conv3 features (N, 128e, h, w) -> every tap and the ImageNet logits."""
        conv4 = self.layer3(conv3)
        x = self.layer4[:-1](conv4)
        conv5, conv5_nobn = _last_block_outputs(self.layer4[-1], x)
        logits = self.fc(torch.flatten(self.avgpool(conv5), 1))
        return BackboneOutput(conv3, conv4, conv5, conv5_nobn, logits)

    def forward(self, frames: Tensor) -> BackboneOutput:
        """Frames (N, 3, H, W) -> :class:`BackboneOutput` (one entry per frame)."""
        return self.from_conv3(self.to_conv3(frames))

    def layer4_convs(self) -> list[nn.Conv2d]:
        """The residual-branch convolutions of every layer4 block: what the report's stage 2
        fine-tunes (see :meth:`residual_convs`)."""
        return self.residual_convs("conv5")

    def residual_convs(self, tap: str) -> list[nn.Conv2d]:
        """The residual-branch convolutions of every block of the layer behind ``tap``, in order.

        conv1/conv2 of each BasicBlock (conv1/conv2/conv3 of each Bottleneck) of layer2 (conv3),
        layer3 (conv4) or layer4 (conv5). The downsample shortcut and the BatchNorms are not
        included, as in the report's stage 2.
        """
        layer = {"conv3": self.layer2, "conv4": self.layer3, "conv5": self.layer4}.get(tap)
        if layer is None:
            raise ValueError(f"tap: must be one of {', '.join(TAPS)}; got {tap!r}")
        names = ("conv1", "conv2", "conv3")
        return [getattr(b, n) for b in layer for n in names if hasattr(b, n)]


def _last_block_outputs(block: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Run the last layer4 block and return (normal output, output without last BN and ReLU)."""
    if not isinstance(block, BasicBlock | Bottleneck):
        raise TypeError(f"unsupported residual block {type(block).__name__}")
    identity = x if block.downsample is None else block.downsample(x)
    out = block.relu(block.bn1(block.conv1(x)))
    if isinstance(block, Bottleneck):
        out = block.relu(block.bn2(block.conv2(out)))
        out, last_bn = block.conv3(out), block.bn3
    else:
        out, last_bn = block.conv2(out), block.bn2
    return block.relu(last_bn(out) + identity), out + identity
