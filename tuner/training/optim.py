"""Optimisers and learning-rate schedules of a training stage (notes §4.2)."""

from __future__ import annotations

import torch
from torch import nn

from models import stage_param_groups
from tuner.training.config import StageSettings, TrainConfig
from tuner.training.recipes import recipe_for

__all__ = ["build_optimizer", "build_scheduler", "group_lr"]


def build_optimizer(
    model: nn.Module, stage: int, cfg: TrainConfig, settings: StageSettings
) -> torch.optim.Optimizer:
    groups = []
    for group in stage_param_groups(model, stage):
        params = [p for p in group["params"] if p.requires_grad]
        if params:
            lr = group_lr(group["name"], cfg, settings)
            groups.append({"params": params, "lr": lr, "name": group["name"]})
    if not groups:
        raise ValueError(f"stage: model {cfg.model} has no trainable parameters in stage {stage}")
    lr, decay = float(settings.lr or 0.0), float(settings.weight_decay or 0.0)
    if settings.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=decay)
    return torch.optim.Adam(groups, lr=lr, eps=1e-4, weight_decay=decay)


def group_lr(name: str, cfg: TrainConfig, settings: StageSettings) -> float:
    """Learning rate of an optimiser group: the base rate, unless the model's recipe sets the
    group's own (the two-stream flow layer4: ``lr_flow``; the TV-L1 parameters of the
    representation-flow layer: base x ``lr_repflow_scale``)."""
    base = float(settings.lr or 0.0)
    special = recipe_for(cfg.model).group_lrs.get(name)
    return base if special is None else special(cfg, base)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, settings: StageSettings
) -> torch.optim.lr_scheduler.LRScheduler:
    gamma = float(settings.gamma)  # type: ignore[arg-type]
    if recipe_for(cfg.model).per_epoch_decay:
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=gamma)
    milestones = list(settings.milestones or ())
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma)
