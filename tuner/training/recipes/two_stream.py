"""The two-stream model: a trained Ego-RNN and a trained flow network, each loaded from its own
checkpoint, fused and fine-tuned jointly with SGD, the learning rate decayed every epoch; the flow
branch's layer4 in its own group at ``lr_flow`` (notes §3.4, §4.2)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from tuner.training.recipes.base import Recipe, StepOutput, load_model_state, register_recipe
from tuner.training.recipes.flow import FLOW_OPTIONS, flow_kwargs
from tuner.training.recipes.options import Option, check_path, learning_rate
from tuner.training.recipes.rgb import RGB_OPTIONS, action_loss, rgb_kwargs

if TYPE_CHECKING:
    from torch import Tensor, nn

    from tuner.training.config import TrainConfig

__all__ = ["TWO_STREAM", "TWO_STREAM_OPTIONS"]

TWO_STREAM_OPTIONS = (
    Option(
        "lr_flow", 1e-4, float, "Learning rate of the flow network's layer4.", learning_rate,
        mutable=True,
    ),
    Option("rgb_checkpoint", None, str | None, "Trained Ego-RNN (stage 2) checkpoint.", check_path),
    Option("flow_checkpoint", None, str | None, "Trained flow_resnet34 checkpoint.", check_path),
)  # fmt: skip


def _build(cfg: TrainConfig, num_classes: int) -> nn.Module:
    from models import create_model

    rgb = create_model("ego_rnn", **rgb_kwargs(cfg, num_classes))
    flow = create_model("flow_resnet34", **flow_kwargs(cfg, num_classes))
    for branch, path, key in (
        (rgb, cfg.rgb_checkpoint, "rgb"),
        (flow, cfg.flow_checkpoint, "flow"),
    ):
        if path is None:
            warnings.warn(
                f"{key}_checkpoint: not set; the two-stream {key} branch starts untrained "
                "(the report starts from a trained Ego-RNN stage 2 and a trained flow network)",
                stacklevel=2,
            )
        else:
            load_model_state(branch, path, strict=True)
    return create_model("two_stream", rgb_model=rgb, flow_model=flow, num_classes=num_classes)


def _two_stream_step(
    model: nn.Module, batch: dict[str, Tensor], cfg: TrainConfig, stage: int, train: bool
) -> StepOutput:
    logits = model(batch["rgb"], batch["flow"])["logits"]
    loss = action_loss(logits, batch["label"])
    return StepOutput(loss, logits, loss)


TWO_STREAM = register_recipe(
    Recipe(
        model="two_stream",
        modalities=("rgb", "flow"),
        step=_two_stream_step,
        model_kwargs=lambda cfg, num_classes: {},
        defaults={
            1: {
                "optimizer": "sgd",
                "lr": 1e-2,
                "weight_decay": 5e-4,
                "epochs": 250,
                "milestones": (),
                "gamma": 0.99,
            }
        },
        staged=False,
        build=_build,
        per_epoch_decay=True,
        group_lrs={"flow": lambda cfg, base: cfg.lr_flow},
        options=(*RGB_OPTIONS, *FLOW_OPTIONS, *TWO_STREAM_OPTIONS),
    )
)
