"""Ego-RNN with the motion-segmentation branch, and with the static-dynamic discriminator too.

The MS loss (weighted by ``alpha.ms``) and the SD loss (``alpha.sd``) are computed in stage 2
only: in stage 1 the backbone and the heads are frozen, so they could change nothing (notes §4.1).
The report trains these models' stage 1 for 150 epochs and their stage 2 for 150 from 1e-4.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuner.training.recipes.base import Recipe, StepOutput, register_recipe
from tuner.training.recipes.options import Option, boolean, choice
from tuner.training.recipes.rgb import REPORT_STAGES, RGB_OPTIONS, action_loss, rgb_kwargs

if TYPE_CHECKING:
    from torch import Tensor, nn

    from tuner.training.config import TrainConfig

__all__ = ["EGO_RNN_MS", "EGO_RNN_MS_SD", "MS_LAYERS", "MS_OPTIONS", "SD_OPTIONS"]

MS_LAYERS = {"conv5": 7, "conv4": 14, "conv3": 28}
"""Motion-segmentation taps and their map side at 224 px (:func:`models.tap_size`)."""


def _dropout(name: str, value: object) -> None:
    if not (isinstance(value, float) and 0 <= value < 1):
        raise ValueError(f"{name}: must be in [0, 1) or null, got {value!r}")


MS_OPTIONS = (
    Option(
        "ms_layer", "conv5", str,
        "Backbone tap of the motion-segmentation head: conv5 (7x7), conv4 (14x14) or conv3 "
        "(28x28).",
        choice(*MS_LAYERS),
    ),
    Option(
        "ms_task", "classification", str,
        "Motion-segmentation task: classification (2 logits per cell) or regression.",
        choice("classification", "regression"),
    ),
    Option(
        "ms_target", "binary", str,
        "mmap target: binary (0/1) or gray (cell mean, regression only).",
        choice("binary", "gray"),
    ),
    Option(
        "ms_downsample", "point", str,
        "mmap downsampling: point (cell centres) or grid (block mean, the grid technique).",
        choice("point", "grid"),
    ),
    Option(
        "ms_loss_norm", "frame_sum", str,
        "frame_sum (the report's sum over cells / (B*T)) or pixel (mean over cells, l^2 times "
        "smaller).",
        choice("pixel", "frame_sum"),
    ),
    Option(
        "ms_dropout", None, float | None,
        "Dropout of the motion-segmentation head before its linear layer; null takes the "
        "report's: 0.5 on conv5, 0.2 on conv4 / conv3.",
        _dropout,
    ),
)  # fmt: skip
"""Options of the motion-segmentation branch."""
SD_OPTIONS = (
    Option(
        "sd_train_conv5", False, bool,
        "Let the static-dynamic loss reach conv5 (layer4) as well as the ConvLSTM and its head.",
        boolean,
    ),
)  # fmt: skip
"""Options of the static-dynamic discriminator."""


def _check_targets(cfg: TrainConfig) -> None:
    if cfg.ms_target == "gray" and cfg.ms_task != "regression":
        raise ValueError("ms_target: gray targets need ms_task=regression")


_STAGES = {
    1: {**REPORT_STAGES[1], "epochs": 150, "milestones": (50, 100)},
    2: dict(REPORT_STAGES[2]),
}


def _ms_kwargs(cfg: TrainConfig, num_classes: int) -> dict[str, Any]:
    return {
        **rgb_kwargs(cfg, num_classes),
        "ms_layer": cfg.ms_layer,
        "ms_task": cfg.ms_task,
        "ms_dropout": cfg.ms_dropout,
    }


def _sd_kwargs(cfg: TrainConfig, num_classes: int) -> dict[str, Any]:
    return {**_ms_kwargs(cfg, num_classes), "sd_train_conv5": cfg.sd_train_conv5}


def _ms_step(
    model: nn.Module, batch: dict[str, Tensor], cfg: TrainConfig, stage: int, train: bool
) -> StepOutput:
    from models import ms_loss

    out = model(batch["rgb"])
    action = action_loss(out["logits"], batch["label"])
    if not train or stage == 1:
        return StepOutput(action, out["logits"], action)
    seg = ms_loss(out["ms"], batch["mmaps"], task=cfg.ms_task, norm=cfg.ms_loss_norm)
    return StepOutput(action + cfg.alpha.ms * seg, out["logits"], action, {"ms_loss": seg})


def _sd_step(
    model: nn.Module, batch: dict[str, Tensor], cfg: TrainConfig, stage: int, train: bool
) -> StepOutput:
    import torch
    import torch.nn.functional as F

    result = _ms_step(model, batch, cfg, stage, train)
    if not train or stage == 1:
        return result
    real = model.discriminate(batch["rgb"])  # type: ignore[operator]
    still = model.discriminate(batch["static"])  # type: ignore[operator]
    dynamic_label = torch.zeros(real.shape[0], dtype=torch.long, device=real.device)
    sd = F.cross_entropy(real, dynamic_label) + F.cross_entropy(still, dynamic_label + 1)
    result.loss = result.loss + cfg.alpha.sd * sd
    result.aux["sd_loss"] = sd
    return result


def _departures(cfg: TrainConfig) -> list[str]:
    if cfg.ms_task == "classification" and cfg.ms_downsample == "grid":
        return [
            "ms_downsample: grid with ms_task=classification turns each cell's block mean into "
            "a majority vote; the report uses the grid technique only for regression and "
            "downsamples binary maps by point"
        ]
    return []


EGO_RNN_MS = register_recipe(
    Recipe(
        model="ego_rnn_ms",
        modalities=("rgb", "mmaps"),
        step=_ms_step,
        model_kwargs=_ms_kwargs,
        defaults=_STAGES,
        aux_names=("ms_loss",),
        warnings=_departures,
        options=(*RGB_OPTIONS, *MS_OPTIONS),
        check=_check_targets,
    )
)
EGO_RNN_MS_SD = register_recipe(
    Recipe(
        model="ego_rnn_ms_sd",
        modalities=("rgb", "mmaps"),
        step=_sd_step,
        model_kwargs=_sd_kwargs,
        defaults=_STAGES,
        static=True,
        aux_names=("ms_loss", "sd_loss"),
        warnings=_departures,
        options=(*RGB_OPTIONS, *MS_OPTIONS, *SD_OPTIONS),
        check=_check_targets,
    )
)
