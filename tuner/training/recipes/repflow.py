"""Ego-RNN with the representation-flow layer after conv3 (the report's §4.3.3): Ego-RNN's
stages, with the layer's TV-L1 parameters at ``lr_repflow_scale`` times the base rate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuner.training.recipes.base import Recipe, register_recipe
from tuner.training.recipes.options import Option, integer, positive
from tuner.training.recipes.rgb import REPORT_STAGES, RGB_OPTIONS, rgb_kwargs, rgb_step

if TYPE_CHECKING:
    from tuner.training.config import TrainConfig

__all__ = ["EGO_RNN_REPFLOW", "REPFLOW_OPTIONS"]

REPFLOW_OPTIONS = (
    Option(
        "repflow_iters", 10, int, "TV-L1 iterations of the representation-flow layer.",
        integer(1, 1000),
    ),
    Option(
        "lr_repflow_scale", 0.01, float,
        "Learning-rate multiplier of the layer's TV-L1 parameters (theta, lambda, tau, "
        "derivative kernels): 0.01 as in the official code; its bottleneck, expansion and "
        "BatchNorm train at the base rate.",
        positive, mutable=True,
    ),
)  # fmt: skip


def _kwargs(cfg: TrainConfig, num_classes: int) -> dict[str, Any]:
    return {**rgb_kwargs(cfg, num_classes), "repflow_iters": cfg.repflow_iters}


def _tvl1_lr(cfg: TrainConfig, base: float) -> float:
    # a hundredth of the base rate by default, as the official code trains the flow layer
    return base * cfg.lr_repflow_scale


EGO_RNN_REPFLOW = register_recipe(
    Recipe(
        model="ego_rnn_repflow",
        modalities=("rgb",),
        step=rgb_step,
        model_kwargs=_kwargs,
        defaults=REPORT_STAGES,
        group_lrs={"repflow": _tvl1_lr},
        options=(*RGB_OPTIONS, *REPFLOW_OPTIONS),
    )
)
