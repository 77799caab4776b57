"""flow_resnet34: stacks of warp flow in, one training phase with SGD as the report (notes §4.2);
validation averages the logits of ``flow_segments`` stacks per video."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuner.training.recipes.base import Recipe, StepOutput, model_weights, register_recipe
from tuner.training.recipes.options import Option, integer
from tuner.training.recipes.rgb import action_loss

if TYPE_CHECKING:
    from torch import Tensor, nn

    from tuner.training.config import TrainConfig

__all__ = ["FLOW_OPTIONS", "FLOW_RESNET34", "flow_kwargs"]

FLOW_OPTIONS = (
    Option(
        "flow_stack", 5, int, "Flow frames stacked per sample (2 * flow_stack input channels).",
        integer(1, 64),
    ),
    Option(
        "flow_segments", 1, int,
        "Flow stacks averaged at evaluation (the report's training-time value is 1).",
        integer(1, 64),
    ),
)  # fmt: skip
"""Options of the flow network (and of the two-stream model's flow branch)."""


def flow_kwargs(cfg: TrainConfig, num_classes: int) -> dict[str, Any]:
    """Keyword arguments of the flow network."""
    return {
        "num_classes": num_classes,
        "backbone": cfg.backbone,
        "weights": model_weights(cfg),
        "input_size": cfg.crop_size,
        "flow_stack": cfg.flow_stack,
    }


def _flow_step(
    model: nn.Module, batch: dict[str, Tensor], cfg: TrainConfig, stage: int, train: bool
) -> StepOutput:
    from models import average_segment_logits

    flow = batch["flow"]
    # (B, S, 2*stack, H, W) holds several segments at evaluation; their logits are averaged
    segmented = flow.dim() == 5
    logits = average_segment_logits(model, flow) if segmented else model(flow)["logits"]
    loss = action_loss(logits, batch["label"])
    return StepOutput(loss, logits, loss)


FLOW_RESNET34 = register_recipe(
    Recipe(
        model="flow_resnet34",
        modalities=("flow",),
        step=_flow_step,
        model_kwargs=flow_kwargs,
        defaults={
            1: {
                "optimizer": "sgd",
                "lr": 1e-2,
                "weight_decay": 5e-4,
                "epochs": 750,
                "milestones": (150, 300, 500),
                "gamma": 0.5,
            }
        },
        staged=False,
        eval_flow_segments=True,
        options=FLOW_OPTIONS,
    )
)
