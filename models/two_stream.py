"""Two-stream Ego-RNN: the RGB Ego-RNN and flow_resnet34, fused on their features.

Sudhakaran & Lanz (BMVC 2018), joint training: the flow network's 512-d pooled features and the
Ego-RNN's 512-d pooled cell state are concatenated (flow first) into 1024 features, then
Dropout(0.5) and a linear classifier. The two branches are trained beforehand and loaded from
their own checkpoints; the branches' own classifiers are not used.

Joint training updates the fusion classifier and the RGB branch's stage-2 set (ConvLSTM, layer4
convolutions, CAM FC) in group ``main``, and the flow branch's layer4 (BatchNorm included, in
train mode) in group ``flow``, which the report trains with a smaller learning rate.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from models._registry import register_model
from models._weights import as_state_dict, load_state_dict_file
from models.ego_rnn import EgoRnn, add_backbone_stage2
from models.flow_resnet import FlowResNet
from models.stages import StagePlan

__all__ = ["BranchState", "TwoStream", "two_stream"]

BranchState = Mapping[str, Tensor] | str | os.PathLike[str]
"""A branch checkpoint: a state dict, or the path of a file holding one."""


class TwoStream(nn.Module):
    """Late fusion of a built Ego-RNN (``rgb_model``) and a built flow network (``flow_model``)."""

    def __init__(self, rgb_model: EgoRnn, flow_model: FlowResNet, *, num_classes: int = 61):
        super().__init__()
        self.rgb, self.flow = rgb_model, flow_model
        fused = flow_model.feature_channels + rgb_model.mem_size
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(fused, num_classes))

    def forward(self, rgb: Tensor, flow: Tensor) -> dict[str, Tensor]:
        """Clip (B, T, 3, H, W) and flow stack (B, 2*stack, H, W) -> ``logits`` (B, classes) and
        ``features`` (B, 1024): flow features then RGB features."""
        features = torch.cat([self.flow(flow)["features"], self.rgb(rgb)["features"]], dim=1)
        return {"logits": self.classifier(features), "features": features}

    def load_branches(
        self, rgb: BranchState | None = None, flow: BranchState | None = None
    ) -> None:
        """Load each given branch from its checkpoint (state dict or file path), strictly."""
        for branch, source in ((self.rgb, rgb), (self.flow, flow)):
            if source is None:
                continue
            if isinstance(source, Mapping):
                state = as_state_dict(source, f"{type(branch).__name__} checkpoint")
            else:
                state = load_state_dict_file(source)
            branch.load_state_dict(state)

    def stage_plan(self, stage: int | str) -> StagePlan:
        """One phase whatever ``stage``: see the module docstring."""
        plan = StagePlan()
        plan.add("main", self.classifier)
        # the RGB branch trains but stays in eval mode, as in the report
        plan.add("main", self.rgb.lstm_cell, train=False)
        cam = self.rgb.attention is not None
        add_backbone_stage2(plan, self.rgb.backbone, cam=cam, train=False)
        plan.add("flow", self.flow.layer4)
        return plan


_FLOW_SHARES = ("num_classes", "backbone", "weights", "input_size")


@register_model("two_stream", keywords_of=EgoRnn)
def two_stream(
    *,
    rgb_model: EgoRnn | None = None,
    flow_model: FlowResNet | None = None,
    rgb_checkpoint: BranchState | None = None,
    flow_checkpoint: BranchState | None = None,
    flow_stack: int = 5,
    **ego_rnn: Any,
) -> TwoStream:
    """Two-stream model from built branches, or from default ones built with the other keywords
    (``ego_rnn``: those of :class:`EgoRnn`; the flow branch takes its class count, backbone,
    weights and input size); each branch is then loaded from its checkpoint when one is given."""
    if rgb_model is None:
        rgb_model = EgoRnn(**ego_rnn)
    if flow_model is None:
        shared = {k: ego_rnn[k] for k in _FLOW_SHARES if k in ego_rnn}
        flow_model = FlowResNet(**shared, flow_stack=flow_stack)
    model = TwoStream(rgb_model, flow_model, num_classes=ego_rnn.get("num_classes", 61))
    model.load_branches(rgb_checkpoint, flow_checkpoint)
    return model
