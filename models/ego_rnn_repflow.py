"""Ego-RNN with a representation-flow layer after conv3.

The report's third extension (notes §3.8): the representation-flow layer of Piergiovanni & Ryoo
(CVPR 2019) sits on the conv3 (layer2) maps of consecutive frames; its T-1 flow representations go
through layer3 and layer4, the optional CAM attention and the ConvLSTM, which therefore runs over
T-1 steps. The layer trains in stage 2: its TV-L1 parameters (theta, lambda, tau and the derivative
kernels) in their own optimiser group ``repflow``, which the engine runs at ``lr_repflow_scale``
(0.01) times the base rate as the official code does; its bottleneck, expansion and BatchNorm in
the ``main`` group at the base rate.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from models._registry import register_model
from models.ego_rnn import EgoRnn, check_clip
from models.representation_flow import RepresentationFlow
from models.stages import StagePlan, check_stage

__all__ = ["EgoRnnRepFlow"]


@register_model("ego_rnn_repflow")
class EgoRnnRepFlow(EgoRnn):
    """Ego-RNN whose ConvLSTM reads the flow of conv3 features instead of single frames."""

    def __init__(self, *, repflow_iters: int = 10, **ego_rnn: Any) -> None:
        """``ego_rnn``: the keywords of :class:`EgoRnn`."""
        super().__init__(**ego_rnn)
        channels = self.backbone.tap_channels["conv3"]
        self.repflow = RepresentationFlow(channels, bottleneck=32, iterations=repflow_iters)

    def forward(self, rgb: Tensor) -> dict[str, Tensor]:
        """Clip (B, T, 3, H, W), T >= 2 -> ``logits`` (B, classes), ``features`` (B, mem)."""
        check_clip(rgb, min_frames=2)
        B, T = rgb.shape[:2]
        conv3 = self.backbone.to_conv3(rgb.flatten(0, 1)).unflatten(0, (B, T))  # (B, T, C, h, w)
        flow = self.repflow(conv3.permute(0, 2, 1, 3, 4))  # (B, C, T-1, h, w)
        steps = flow.permute(0, 2, 1, 3, 4).flatten(0, 1)  # (B*(T-1), C, h, w), sample-major
        attended = self.attend(self.backbone.from_conv3(steps))  # (B*(T-1), C5, h5, w5)
        return self.classify(self.pooled_memory(attended.unflatten(0, (B, T - 1))))

    def stage_plan(self, stage: int | str) -> StagePlan:
        """Ego-RNN's stages; stage 2 also trains the representation-flow layer in train mode
        (BatchNorm included): TV-L1 parameters in group ``repflow``, the rest in ``main``."""
        plan = super().stage_plan(stage)
        if check_stage(stage) == 2:
            tvl1 = self.repflow.tvl1
            own = set(map(id, tvl1.parameters()))
            rest: list[Tensor] = [p for p in self.repflow.parameters() if id(p) not in own]
            plan.add("main", self.repflow, rest)
            plan.add("repflow", tvl1)
        return plan
