"""Ego-RNN, with or without CAM: RGB clips in, the action cross-entropy out, the report's two
stages (notes §4.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuner.training.recipes.base import Recipe, StepOutput, model_weights, register_recipe
from tuner.training.recipes.options import Option, boolean, integer

if TYPE_CHECKING:
    from torch import Tensor, nn

    from tuner.training.config import TrainConfig

__all__ = ["EGO_RNN", "REPORT_STAGES", "RGB_OPTIONS", "action_loss", "rgb_kwargs", "rgb_step"]

RGB_OPTIONS = (
    Option("cam", True, bool, "Use the CAM spatial attention in the Ego-RNN family.", boolean),
    Option("mem_size", 512, int, "ConvLSTM channels.", integer(1, 8192)),
)
"""Options of every Ego-RNN variant (and of the two-stream model's RGB branch)."""

REPORT_STAGES = {
    1: {
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 4e-5,
        "epochs": 200,
        "milestones": (25, 75, 150),
        "gamma": 0.1,
    },
    2: {
        "optimizer": "adam",
        "lr": 1e-4,
        "weight_decay": 4e-5,
        "epochs": 150,
        "milestones": (25, 75),
        "gamma": 0.1,
    },
}
"""The report's Ego-RNN stages: Adam (eps 1e-4), 200 epochs from 1e-3, then 150 from 1e-4."""


def action_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of the action logits (B, C) against the labels (B,)."""
    import torch.nn.functional as F

    return F.cross_entropy(logits, labels)


def rgb_kwargs(cfg: TrainConfig, num_classes: int) -> dict[str, Any]:
    """Keyword arguments every Ego-RNN variant takes."""
    return {
        "num_classes": num_classes,
        "backbone": cfg.backbone,
        "weights": model_weights(cfg),
        "input_size": cfg.crop_size,
        "mem_size": cfg.mem_size,
        "cam": cfg.cam,
    }


def rgb_step(
    model: nn.Module, batch: dict[str, Tensor], cfg: TrainConfig, stage: int, train: bool
) -> StepOutput:
    logits = model(batch["rgb"])["logits"]
    loss = action_loss(logits, batch["label"])
    return StepOutput(loss, logits, loss)


EGO_RNN = register_recipe(
    Recipe(
        model="ego_rnn",
        modalities=("rgb",),
        step=rgb_step,
        model_kwargs=rgb_kwargs,
        defaults=REPORT_STAGES,
        options=RGB_OPTIONS,
    )
)
