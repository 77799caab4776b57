"""flow_resnet34: a ResNet on stacks of optical-flow images (the temporal stream of Ego-RNN).

Simonyan & Zisserman, "Two-Stream Convolutional Networks for Action Recognition in Videos"
(NeurIPS 2014), with the cross-modality initialisation of Wang et al., "Temporal Segment
Networks" (ECCV 2016): conv1 takes the 2*stack interleaved x/y flow channels, and from ImageNet
weights it starts as the RGB conv1 averaged over its three input channels, repeated for each flow
channel. Head: global average pooling, Dropout(0.5), Linear(512, classes). Every parameter trains,
BatchNorm included.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models._registry import register_model
from models._weights import Weights, resolve_weights
from models.backbone import build_resnet
from models.stages import StagePlan

__all__ = ["FlowResNet", "average_segment_logits", "imagenet_to_flow_state"]


def imagenet_to_flow_state(state: dict[str, Tensor], in_channels: int) -> dict[str, Tensor]:
    """An RGB ImageNet ResNet state dict adapted to ``in_channels`` flow channels.

    conv1.weight (64, 3, k, k) becomes its mean over the RGB dimension repeated ``in_channels``
    times, (64, in_channels, k, k), without rescaling; the ImageNet FC is dropped.
    """
    adapted = {k: v for k, v in state.items() if not k.startswith("fc.")}
    conv1 = adapted["conv1.weight"]
    if conv1.shape[1] != in_channels:
        adapted["conv1.weight"] = conv1.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)
    return adapted


@register_model("flow_resnet34")
class FlowResNet(nn.Module):
    """ResNet over a flow stack (B, 2*stack, H, W); returns logits and the 512-d features."""

    def __init__(
        self,
        *,
        num_classes: int = 61,
        backbone: str = "resnet34",
        weights: Weights = None,
        input_size: int = 224,
        flow_stack: int = 5,
    ) -> None:
        super().__init__()
        if flow_stack < 1:
            raise ValueError(f"flow_stack: must be >= 1, got {flow_stack}")
        net = build_resnet(backbone)
        self.input_size, self.in_channels = input_size, 2 * flow_stack
        self.conv1 = nn.Conv2d(self.in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1, self.relu, self.maxpool = net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        self.avgpool = net.avgpool
        self.feature_channels = net.fc.in_features
        self.dropout = nn.Dropout(0.5)
        self.fc_action = nn.Linear(self.feature_channels, num_classes)
        state = resolve_weights(backbone, weights)
        if state is not None:
            self._load_backbone(imagenet_to_flow_state(state, self.in_channels))

    def forward(self, flow: Tensor) -> dict[str, Tensor]:
        """Flow stack (B, 2*stack, H, W) -> ``logits`` (B, classes), ``features`` (B, 512e)."""
        if flow.dim() != 4 or flow.shape[1] != self.in_channels:
            raise ValueError(
                f"flow: expected (B, {self.in_channels}, H, W), got shape {tuple(flow.shape)}"
            )
        x = self.maxpool(self.relu(self.bn1(self.conv1(flow))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        features = torch.flatten(self.avgpool(x), 1)  # (B, 512e), before dropout
        return {"logits": self.fc_action(self.dropout(features)), "features": features}

    def _load_backbone(self, state: dict[str, Tensor]) -> None:
        """Load every parameter but the new action head, which keeps its initialisation."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        stray = [k for k in missing if not k.startswith("fc_action.")] + list(unexpected)
        if stray:
            raise ValueError(f"weights: backbone state dict does not fit: {', '.join(stray)}")

    def stage_plan(self, stage: int | str) -> StagePlan:
        """One phase whatever ``stage``: every parameter in ``main``, the whole model in train
        mode."""
        plan = StagePlan()
        plan.add("main", self)
        return plan


def average_segment_logits(model: nn.Module, flow_segments: Tensor) -> Tensor:
    """Segments (B, S, 2*stack, H, W) -> logits (B, classes) averaged over the S segments."""
    B, S = flow_segments.shape[:2]
    logits = model(flow_segments.flatten(0, 1))["logits"]  # (B*S, classes), sample-major
    return logits.unflatten(0, (B, S)).mean(dim=1)
