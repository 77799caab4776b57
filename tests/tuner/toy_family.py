"""A model family defined outside egotune, as a researcher would add one: its model and its
recipe in one module (docs/models.md, "Adding a model family"). Importing it registers both;
tests/tuner/test_model_family.py searches a space over its option.

The model averages each clip's pixels per channel and classifies them with a small MLP of
``toy_width`` hidden units: a few hundred parameters, trained in one phase.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models import StagePlan, register_model
from tuner.training.recipes import Recipe, StepOutput, register_recipe
from tuner.training.recipes.options import Option, integer

if TYPE_CHECKING:
    from tuner.training.config import TrainConfig

MODEL = "toy_mean"


@register_model(MODEL)
class ToyMean(nn.Module):
    """Mean colour of a clip -> ``width`` hidden units -> class logits."""

    def __init__(self, *, num_classes: int = 61, width: int = 8) -> None:
        super().__init__()
        self.hidden = nn.Linear(3, width)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, rgb: Tensor) -> dict[str, Tensor]:
        features = torch.relu(self.hidden(rgb.mean(dim=(1, 3, 4))))  # (B, T, 3, H, W) -> (B, 3)
        return {"logits": self.classifier(features), "features": features}

    def stage_plan(self, stage: int | str) -> StagePlan:
        plan = StagePlan()
        plan.add("main", self)
        return plan


TOY_OPTIONS = (Option("toy_width", 8, int, "Hidden units of the toy model.", integer(1, 64)),)


def _kwargs(cfg: TrainConfig, num_classes: int) -> dict[str, Any]:
    return {"num_classes": num_classes, "width": cfg.toy_width}


def _step(
    model: nn.Module, batch: dict[str, Tensor], cfg: TrainConfig, stage: int, train: bool
) -> StepOutput:
    logits = model(batch["rgb"])["logits"]
    loss = F.cross_entropy(logits, batch["label"])
    return StepOutput(loss, logits, loss)


TOY_MEAN = register_recipe(
    Recipe(
        model=MODEL,
        modalities=("rgb",),
        step=_step,
        model_kwargs=_kwargs,
        defaults={
            1: {
                "optimizer": "adam",
                "lr": 3e-2,
                "weight_decay": 0.0,
                "epochs": 4,
                "milestones": (),
                "gamma": 0.1,
            }
        },
        staged=False,
        options=TOY_OPTIONS,
    )
)
