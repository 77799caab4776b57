"""Model families: which inputs a model takes and how one batch becomes a loss.

Every family computes the action cross-entropy on the logits; the motion-segmentation (MS) and
static-dynamic (SD) families add their auxiliary losses weighted by ``alpha.ms`` / ``alpha.sd``.
Auxiliary losses are computed only where they can change a trainable parameter: in stage 1 the
backbone and the heads are frozen, so the MS head would receive no update (notes §4.1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models import average_segment_logits, ms_loss
from tuner.config import TrainConfig

__all__ = ["Family", "StepOutput", "family_for"]


@dataclass
class StepOutput:
    """Result of one forward pass over a batch."""

    loss: Tensor
    """Total loss to back-propagate (action CE plus weighted auxiliary losses)."""
    logits: Tensor
    """Action logits (B, num_classes)."""
    action_loss: Tensor
    """Action cross-entropy alone (what validation reports as ``val_loss``)."""
    aux: dict[str, Tensor] = field(default_factory=dict)
    """Unweighted auxiliary losses by name (``ms_loss``, ``sd_loss``)."""


StepFn = Callable[[nn.Module, dict[str, Tensor], TrainConfig, int, bool], StepOutput]


@dataclass(frozen=True)
class Family:
    """How to feed and score one kind of model."""

    name: str
    modalities: tuple[str, ...]
    """Dataset modalities the model consumes (subset of rgb, flow, mmaps)."""
    static: bool
    """Whether batches also carry the static (repeated-frame) clip."""
    step: StepFn
    aux_names: tuple[str, ...] = ()


def _action(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(logits, labels)


def _rgb_step(
    model: nn.Module, batch: dict[str, Tensor], cfg: TrainConfig, stage: int, train: bool
) -> StepOutput:
    logits = model(batch["rgb"])["logits"]
    loss = _action(logits, batch["label"])
    return StepOutput(loss, logits, loss)


def _flow_step(
    model: nn.Module, batch: dict[str, Tensor], cfg: TrainConfig, stage: int, train: bool
) -> StepOutput:
    flow = batch["flow"]
    # (B, S, 2*stack, H, W) holds several segments at evaluation; their logits are averaged
    segmented = flow.dim() == 5
    logits = average_segment_logits(model, flow) if segmented else model(flow)["logits"]
    loss = _action(logits, batch["label"])
    return StepOutput(loss, logits, loss)


def _two_stream_step(
    model: nn.Module, batch: dict[str, Tensor], cfg: TrainConfig, stage: int, train: bool
) -> StepOutput:
    logits = model(batch["rgb"], batch["flow"])["logits"]
    loss = _action(logits, batch["label"])
    return StepOutput(loss, logits, loss)


def _ms_step(
    model: nn.Module, batch: dict[str, Tensor], cfg: TrainConfig, stage: int, train: bool
) -> StepOutput:
    out = model(batch["rgb"])
    action = _action(out["logits"], batch["label"])
    if not train or stage == 1:
        return StepOutput(action, out["logits"], action)
    seg = ms_loss(out["ms"], batch["mmaps"], task=cfg.ms_task, norm=cfg.ms_loss_norm)
    return StepOutput(action + cfg.alpha.ms * seg, out["logits"], action, {"ms_loss": seg})


def _sd_step(
    model: nn.Module, batch: dict[str, Tensor], cfg: TrainConfig, stage: int, train: bool
) -> StepOutput:
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


_FAMILIES = {
    "ego_rnn": Family("rgb", ("rgb",), False, _rgb_step),
    "ego_rnn_repflow": Family("repflow", ("rgb",), False, _rgb_step),
    "flow_resnet34": Family("flow", ("flow",), False, _flow_step),
    "two_stream": Family("two_stream", ("rgb", "flow"), False, _two_stream_step),
    "ego_rnn_ms": Family("ms", ("rgb", "mmaps"), False, _ms_step, ("ms_loss",)),
    "ego_rnn_ms_sd": Family("sd", ("rgb", "mmaps"), True, _sd_step, ("ms_loss", "sd_loss")),
}


def family_for(model_name: str) -> Family:
    """The family of a registered model name."""
    try:
        return _FAMILIES[model_name]
    except KeyError:
        raise ValueError(f"model: no training family for {model_name!r}") from None
