"""Ego-RNN with the motion-segmentation branch, and with the static-dynamic discriminator.

The MS model (SparNet's self-supervision on Ego-RNN, notes §3.6) adds a
:class:`~models.motion_segmentation.MotionSegmentationHead` on one backbone tap: conv3 (layer2),
conv4 (layer3) or conv5 (layer4, after BatchNorm and ReLU), so the map side l is input_size/8,
/16 or /32. The head is computed in every mode; evaluation scores the action logits alone and the
training engine adds ``ms_loss`` on ``"ms"`` only while training.

Stage 2 trains, besides Ego-RNN's stage-2 set and the head, the residual-branch convolutions of
every backbone layer from the tap up to conv5 (layer3 for conv4; layer2 and layer3 for conv3),
BatchNorm kept in eval mode as for layer4: the report moves the head down "to force the training
on more low level layers", so the MS gradient has to reach the features the action path reads.

The static-dynamic model (the report's §3.5) adds Dropout(0.7) + Linear(mem, 2) on the pooled cell
state c_T, trained to tell real clips (label ``DYNAMIC`` = 0) from clips repeating one frame
(label ``STATIC`` = 1, see :func:`static_clip`). Its loss is weighted by alpha in the engine.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from models._registry import register_model
from models.backbone import tap_size
from models.ego_rnn import EgoRnn, check_clip
from models.motion_segmentation import MotionSegmentationHead, report_ms_dropout
from models.stages import StagePlan, check_stage

__all__ = [
    "DYNAMIC",
    "STATIC",
    "EgoRnnMs",
    "EgoRnnMsSd",
    "static_clip",
]

DYNAMIC = 0
"""Static-dynamic label of a real clip."""
_TAPS_BELOW_CONV5 = {"conv5": (), "conv4": ("conv4",), "conv3": ("conv3", "conv4")}
"""Backbone layers (by tap) between an MS head's tap and conv5, which its stage 2 trains."""
STATIC = 1
"""Static-dynamic label of a clip that repeats one frame."""


@register_model("ego_rnn_ms")
class EgoRnnMs(EgoRnn):
    """Ego-RNN plus a motion-segmentation head on the ``ms_layer`` tap."""

    def __init__(
        self,
        *,
        ms_layer: str = "conv5",
        ms_task: str = "classification",
        ms_dropout: float | None = None,
        **ego_rnn: Any,
    ) -> None:
        """``ego_rnn``: the keywords of :class:`EgoRnn`."""
        super().__init__(**ego_rnn)
        self.ms_layer, self.ms_task = ms_layer, ms_task
        map_size = tap_size(self.input_size, ms_layer)  # also rejects an unknown ms_layer
        channels = self.backbone.tap_channels[ms_layer]
        dropout = report_ms_dropout(ms_layer) if ms_dropout is None else ms_dropout
        self.ms_head = MotionSegmentationHead(channels, map_size, ms_task, dropout=dropout)

    def forward(self, rgb: Tensor) -> dict[str, Tensor]:
        """Clip (B, T, 3, input_size, input_size) -> ``logits`` (B, classes), ``features``
        (B, mem) and ``ms``: (B, T, 2, l, l) logits or (B, T, l, l) regression values."""
        check_clip(rgb, self.input_size)
        B, T = rgb.shape[:2]
        taps, attended = self.encode_frames(rgb)
        out = self.classify(self.pooled_memory(attended))
        ms = self.ms_head(getattr(taps, self.ms_layer))  # (B*T, [2,] l, l), sample-major
        out["ms"] = ms.unflatten(0, (B, T))  # (B, T, [2,] l, l)
        return out

    def stage_plan(self, stage: int | str) -> StagePlan:
        """Ego-RNN's stages; stage 2 also trains the MS head and the convolutions between its tap
        and conv5 (all in the ``main`` group; their BatchNorms stay in eval mode)."""
        plan = super().stage_plan(stage)
        if check_stage(stage) == 2:
            for tap in _TAPS_BELOW_CONV5[self.ms_layer]:
                for conv in self.backbone.residual_convs(tap):
                    plan.add("main", conv, [conv.weight])
            plan.add("main", self.ms_head)
        return plan


@register_model("ego_rnn_ms_sd")
class EgoRnnMsSd(EgoRnnMs):
    """The MS model plus the static-dynamic discriminator on the pooled cell state."""

    def __init__(self, *, sd_train_conv5: bool = False, **ego_rnn_ms: Any) -> None:
        """``ego_rnn_ms``: the keywords of :class:`EgoRnnMs`."""
        super().__init__(**ego_rnn_ms)
        self.sd_train_conv5 = sd_train_conv5
        self.sd_head = nn.Sequential(nn.Dropout(0.7), nn.Linear(self.mem_size, 2))

    def discriminate(self, clip: Tensor) -> Tensor:
        """Clip (B, T, 3, H, W) -> static-dynamic logits (B, 2) (index 0 dynamic, 1 static).

        With ``sd_train_conv5=False`` the backbone runs without gradient, so this loss trains only
        the ConvLSTM and the discriminator head; with ``True`` it also reaches the backbone
        parameters the stage trains (layer4 convolutions, and the FC through the CAM).
        """
        check_clip(clip, self.input_size)
        with torch.set_grad_enabled(self.sd_train_conv5 and torch.is_grad_enabled()):
            _, attended = self.encode_frames(clip)
        return self.sd_head(self.pooled_memory(attended))

    def stage_plan(self, stage: int | str) -> StagePlan:
        """The MS model's stages; stage 2 also trains the discriminator head."""
        plan = super().stage_plan(stage)
        if check_stage(stage) == 2:
            plan.add("main", self.sd_head)
        return plan


def static_clip(rgb: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Clip (B, T, 3, H, W) -> a clip of the same shape repeating one random frame per sample."""
    B, T = rgb.shape[:2]
    index = torch.randint(T, (B,), generator=generator, device="cpu").to(rgb.device)
    frames = rgb[torch.arange(B, device=rgb.device), index]  # (B, 3, H, W)
    return frames.unsqueeze(1).expand_as(rgb).contiguous()  # (B, T, 3, H, W)
