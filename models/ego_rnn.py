"""Ego-RNN: a ResNet, CAM spatial attention and a ConvLSTM over the frames of a clip.

Sudhakaran & Lanz, "Attention is All We Need: Nailing Down Object-centric Attention for
Egocentric Activity Recognition" (BMVC 2018). Each frame goes through the ResNet; the CAM of the
winning ImageNet class weighs the conv5 features before their last BatchNorm and ReLU (without CAM
those features are used as they are); a ConvLSTM runs over the T frames, and the classifier sees
the spatially averaged *cell* state c_T through Dropout(0.7) and a linear layer.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from models._registry import register_model
from models._weights import Weights
from models.backbone import BackboneOutput, ResNetBackbone
from models.cam_attention import CamAttention
from models.conv_lstm import ConvLSTMCell
from models.stages import StagePlan, check_stage

__all__ = ["EgoRnn", "check_clip"]


def check_clip(rgb: Tensor, input_size: int | None = None, min_frames: int = 1) -> None:
    """Raise ``ValueError`` unless ``rgb`` is (B, T, 3, H, W) with T >= ``min_frames``.

    With ``input_size``, H and W must both equal it (models whose heads are sized for it).
    """
    if rgb.dim() != 5 or rgb.shape[2] != 3:
        raise ValueError(f"rgb: expected a (B, T, 3, H, W) clip, got shape {tuple(rgb.shape)}")
    if rgb.shape[1] < min_frames:
        raise ValueError(f"rgb: needs at least {min_frames} frames, got {rgb.shape[1]}")
    if input_size is not None and tuple(rgb.shape[-2:]) != (input_size, input_size):
        raise ValueError(
            f"rgb: frames are {tuple(rgb.shape[-2:])} but the model was built for "
            f"input_size={input_size}"
        )


@register_model("ego_rnn")
class EgoRnn(nn.Module):
    """Ego-RNN with optional CAM attention; returns action logits and the pooled cell state."""

    def __init__(
        self,
        *,
        num_classes: int = 61,
        mem_size: int = 512,
        cam: bool = True,
        backbone: str = "resnet34",
        weights: Weights = None,
        input_size: int = 224,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.mem_size = mem_size
        self.backbone = ResNetBackbone(backbone, weights)
        self.attention = CamAttention() if cam else None
        self.lstm_cell = ConvLSTMCell(self.backbone.feature_channels, mem_size, kernel_size=3)
        self.classifier = nn.Sequential(nn.Dropout(0.7), nn.Linear(mem_size, num_classes))

    def forward(self, rgb: Tensor) -> dict[str, Tensor]:
        """Clip (B, T, 3, H, W) -> ``logits`` (B, num_classes), ``features`` (B, mem_size)."""
        check_clip(rgb)
        _, attended = self.encode_frames(rgb)
        return self.classify(self.pooled_memory(attended))

    def encode_frames(self, rgb: Tensor) -> tuple[BackboneOutput, Tensor]:
        """Clip (B, T, 3, H, W) -> backbone outputs of the B*T frames (sample-major) and the
        ConvLSTM inputs (B, T, C, h, w)."""
        B, T = rgb.shape[:2]
        taps = self.backbone(rgb.flatten(0, 1))  # (B*T, ...): frames of a sample stay together
        return taps, self.attend(taps).unflatten(0, (B, T))  # (B, T, C, h, w)

    def attend(self, taps: BackboneOutput) -> Tensor:
        """Backbone outputs of N frames -> ConvLSTM inputs (N, C, h, w), CAM-weighted or not."""
        if self.attention is None:
            return taps.conv5_nobn
        attended, _ = self.attention(
            taps.logits, taps.conv5, taps.conv5_nobn, self.backbone.fc.weight
        )
        return attended

    def pooled_memory(self, steps: Tensor) -> Tensor:
        """ConvLSTM over steps (B, T, C, h, w) -> spatially averaged cell state c_T (B, mem)."""
        state = None
        for step in steps.permute(1, 0, 2, 3, 4):  # time-major: (T, B, C, h, w)
            state = self.lstm_cell(step, state)
        assert state is not None
        return F.adaptive_avg_pool2d(state[1], 1).flatten(1)  # (B, mem)

    def classify(self, pooled: Tensor) -> dict[str, Tensor]:
        """Pooled cell state (B, mem) -> ``{"logits": (B, classes), "features": (B, mem)}``."""
        return {"logits": self.classifier(pooled), "features": pooled}

    def stage_plan(self, stage: int | str) -> StagePlan:
        """Stage 1: ConvLSTM and classifier. Stage 2: also the layer4 convolutions and, with
        CAM, the FC weight (the FC bias never reaches an output that is trained on)."""
        plan = StagePlan()
        plan.add("main", self.lstm_cell)
        plan.add("main", self.classifier)
        if check_stage(stage) == 2:
            add_backbone_stage2(plan, self.backbone, cam=self.attention is not None)
        return plan


def add_backbone_stage2(
    plan: StagePlan, backbone: ResNetBackbone, *, cam: bool, train: bool = True
) -> None:
    """Add the stage-2 part of ``backbone`` to ``plan``: layer4 convolutions, FC weight with CAM."""
    for conv in backbone.layer4_convs():
        plan.add("main", conv, [conv.weight], train=train)
    if cam:
        plan.add("main", backbone.fc, [backbone.fc.weight], train=train)
