"""What each training stage trains, in which optimiser group, and which modules run in train mode.

The report trains the RGB models in two stages (notes §4.1): stage 1 trains the ConvLSTM and
the classifier; stage 2 also fine-tunes the residual-branch convolutions of layer4, the ImageNet
FC behind the CAM and the auxiliary heads. Everything else is frozen and stays in eval mode, so
every BatchNorm keeps its ImageNet statistics. flow_resnet34 trains fully in one phase; the
two-stream model trains the fusion classifier, the RGB branch's stage-2 set and, in a separate
group with its own learning rate, the flow branch's layer4.

Every model of the package describes itself with a :class:`StagePlan`; the functions below
apply it. Groups carry no learning rate: the training engine adds one per group name
(``main``; ``flow`` for the two-stream flow layer4; ``repflow`` for the TV-L1 parameters of the
representation-flow layer, which the original trains at 0.01x the base rate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

__all__ = ["StagePlan", "check_stage", "set_stage_mode", "stage_param_groups"]


@dataclass
class StagePlan:
    """Trainable parameters per optimiser group, and the modules that run in train mode."""

    groups: dict[str, list[Tensor]] = field(default_factory=dict)
    """Group name -> parameters, in a stable order."""
    train_modules: list[nn.Module] = field(default_factory=list)
    """Modules switched to train mode; everything else stays in eval mode."""

    def add(
        self,
        group: str,
        module: nn.Module,
        params: list[Tensor] | None = None,
        *,
        train: bool = True,
    ) -> None:
        """Train ``params`` (default: all of ``module``'s) in ``group``; ``train`` puts ``module``
        in train mode."""
        self.groups.setdefault(group, []).extend(
            list(module.parameters()) if params is None else params
        )
        if train:
            self.train_modules.append(module)


@runtime_checkable
class _Staged(Protocol):
    def stage_plan(self, stage: int | str) -> StagePlan: ...


def check_stage(stage: int | str) -> int:
    """``stage`` as 1 or 2 (``"1"``/``"2"`` accepted); anything else is a ``ValueError``."""
    if str(stage) not in ("1", "2"):
        raise ValueError(f"stage: must be 1 or 2, got {stage!r}")
    return int(stage)


def stage_param_groups(model: nn.Module, stage: int | str) -> list[dict[str, Any]]:
    """Optimiser groups ``[{"name": str, "params": [Parameter, ...]}, ...]`` of ``stage``.

    Empty groups are left out; the dicts can go to a ``torch.optim`` optimiser once the engine has
    added each group's learning rate. The stage is ignored by single-phase models.
    """
    plan = _plan(model, stage)
    return [{"name": name, "params": params} for name, params in plan.groups.items() if params]


def set_stage_mode(model: nn.Module, stage: int | str) -> None:
    """Set ``requires_grad`` and train/eval modes for training ``stage``.

    Only the stage's parameters require gradients; the whole model goes to eval mode, then the
    plan's modules to train mode. Call it at the start of every training epoch (after
    ``model.train()``); call ``model.eval()`` for evaluation as usual.
    """
    plan = _plan(model, stage)
    model.requires_grad_(False)
    for params in plan.groups.values():
        for param in params:
            param.requires_grad_(True)
    model.eval()
    for module in plan.train_modules:
        module.train()


def _plan(model: nn.Module, stage: int | str) -> StagePlan:
    if not isinstance(model, _Staged):
        raise TypeError(f"{type(model).__name__} does not describe its training stages")
    return model.stage_plan(stage)
