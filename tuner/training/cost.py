"""What a configuration costs, in counted FLOPs: per clip, per epoch, per trial.

The counts come from ``torch.utils.flop_counter.FlopCounterMode`` on fake tensors
(``FakeTensorMode``): the model is built and run on tensors that have shapes but no data, so a
count takes about a second on any machine and computes nothing. They count the matrix products and
convolutions of one training step (forward and backward, with the gradients the stage asks for)
and of one validation forward pass; elementwise work (activations, the optimiser, data loading)
is left out, as in every FLOP figure of the literature. One scale for every clip length and crop:
what fidelity schedules (:mod:`tuner.training.fidelity`) are planned and compared on, and the cost
column of the trials table.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
from torch import Tensor

from models import set_stage_mode, tap_size
from tuner.errors import EgotuneError
from tuner.training.config import RUNTIME_KEYS, SCHEDULE_KEYS, TrainConfig
from tuner.training.fidelity import FidelitySchedule
from tuner.training.recipes import build_model, recipe_for

__all__ = [
    "GTEA61_CLIPS",
    "ClipFlops",
    "check_rung_shapes",
    "clip_flops",
    "epoch_flops",
    "example_batch",
    "schedule_plan",
    "trial_flops",
]

GTEA61_CLIPS = {"train": 341, "val": 116, "classes": 61}
"""The clips of one GTEA61 epoch on the report's split (S1, S3, S4 / S2): what plans are counted
on when no dataset is at hand (``spaces show``)."""
_UNCOUNTED = (*SCHEDULE_KEYS, *RUNTIME_KEYS, "stage1", "alpha", "seed", "train_users", "val_users")
_COUNT_BATCH = 2  # clips per counted step: per-clip counts are the same at any batch


@dataclass(frozen=True)
class ClipFlops:
    """FLOPs of one clip: a training step's forward and backward, a validation forward."""

    train: float
    val: float


def example_batch(
    cfg: TrainConfig, num_classes: int, batch: int, device: torch.device | str = "cpu"
) -> dict[str, Tensor]:
    """Random inputs of the shapes the loaders give ``cfg``'s model family."""
    family = recipe_for(cfg.model)
    B, T, S = batch, cfg.frames, cfg.crop_size
    out = {"label": torch.randint(0, num_classes, (B,), device=device)}
    if "rgb" in family.modalities:
        out["rgb"] = torch.randn(B, T, 3, S, S, device=device)
    if "flow" in family.modalities:
        out["flow"] = torch.randn(B, 2 * cfg.flow_stack, S, S, device=device)
    if "mmaps" in family.modalities:
        side = tap_size(S, cfg.ms_layer)
        out["mmaps"] = torch.randint(0, 2, (B, T, side, side), device=device).float()
    if family.static:
        out["static"] = out["rgb"][:, :1].expand_as(out["rgb"]).clone()
    return out


def _countable(cfg: TrainConfig, frames: int | None, crop_size: int | None) -> TrainConfig:
    """``cfg`` at the given size with what a count cannot load, or does not depend on (the
    optimisation settings, the seed, the split), left out: one count serves a whole grid."""
    defaults = TrainConfig.defaults()
    changes: dict[str, Any] = {key: defaults[key] for key in _UNCOUNTED}
    changes.update(
        frames=frames or cfg.frames,
        crop_size=crop_size or cfg.crop_size,
        weights="none",
        init_checkpoint=None,
        device="cpu",
        compile="off",
        precision="fp32",
        channels_last=False,
    )
    return cfg.replace(**changes)


def clip_flops(
    cfg: TrainConfig,
    num_classes: int,
    stage: int | None = None,
    *,
    frames: int | None = None,
    crop_size: int | None = None,
) -> ClipFlops:
    """Counted FLOPs per clip of ``cfg``'s ``stage`` (default: its last) at ``frames`` and
    ``crop_size`` (default: its own). Cached per configuration."""
    counted = _countable(cfg, frames, crop_size)
    key = json.dumps(counted.to_dict(), sort_keys=True, default=str)
    return _count(key, num_classes, stage or cfg.stages[-1])


@cache
def _count(key: str, num_classes: int, stage: int) -> ClipFlops:
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    cfg = TrainConfig.from_dict(json.loads(key))
    recipe = recipe_for(cfg.model)
    with FakeTensorMode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # two-stream branches without checkpoints
        model = build_model(cfg, num_classes)
        batch = example_batch(cfg, num_classes, _COUNT_BATCH)
        model.train()
        set_stage_mode(model, stage)
        with FlopCounterMode(display=False) as train:
            recipe.step(model, batch, cfg, stage, True).loss.backward()
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as val:
            recipe.step(model, batch, cfg, stage, False)
    segments = cfg.flow_segments if recipe.eval_flow_segments else 1
    return ClipFlops(
        train=train.get_total_flops() / _COUNT_BATCH,
        val=val.get_total_flops() / _COUNT_BATCH * segments,
    )


def epoch_flops(
    cfg: TrainConfig,
    num_classes: int,
    train_clips: int,
    val_clips: int,
    stage: int | None = None,
    *,
    frames: int | None = None,
    crop_size: int | None = None,
) -> float:
    """FLOPs of one epoch: ``train_clips`` training steps' worth and ``val_clips`` validation
    passes."""
    per_clip = clip_flops(cfg, num_classes, stage, frames=frames, crop_size=crop_size)
    return per_clip.train * train_clips + per_clip.val * val_clips


def trial_flops(
    cfg: TrainConfig, schedule: FidelitySchedule, clips: dict[str, int] = GTEA61_CLIPS
) -> float:
    """FLOPs of a whole trial of ``cfg`` (every epoch of every stage) under ``schedule``, on
    ``clips`` (``train``, ``val``, ``classes``) per epoch."""
    total = 0.0
    first = 1
    for stage in cfg.stages:
        epochs = cfg.stage_settings(stage).epochs or 0
        last = first + epochs - 1
        for start, end, frames, crop in schedule.segments(last, cfg.frames, cfg.crop_size):
            start, end = max(start, first), min(end, last)
            if end >= start:
                per_epoch = epoch_flops(
                    cfg,
                    clips["classes"],
                    clips["train"],
                    clips["val"],
                    stage,
                    frames=frames,
                    crop_size=crop,
                )
                total += per_epoch * (end - start + 1)
        first = last + 1
    return total


def check_rung_shapes(cfg: TrainConfig, schedule: FidelitySchedule, num_classes: int) -> None:
    """Raise :class:`EgotuneError` when a rung's crop would give ``cfg``'s model weights of other
    shapes than its own crop does (the MS head over a smaller map): a promotion keeps the
    weights, so every rung must fit them."""
    full = _shapes(_countable(cfg, None, None), num_classes)
    for rung in schedule.rungs:
        if rung.crop_size is None or rung.crop_size == cfg.crop_size:
            continue
        if _shapes(_countable(cfg, None, rung.crop_size), num_classes) != full:
            ms = f" (the MS head is sized for the {cfg.ms_layer} map)" if _has_ms(cfg) else ""
            raise EgotuneError(
                f"scheduler.rungs: crop_size {rung.crop_size} (until epoch {rung.until}) gives "
                f"{cfg.model} other weight shapes than its crop_size {cfg.crop_size}{ms}; use "
                f"a crop with the same map side ({_same_side(cfg)}) or leave crop_size out"
            )


def _has_ms(cfg: TrainConfig) -> bool:
    return "mmaps" in recipe_for(cfg.model).modalities


def _same_side(cfg: TrainConfig) -> str:
    if not _has_ms(cfg):
        return f"{cfg.crop_size} pixels"
    side = tap_size(cfg.crop_size, cfg.ms_layer)
    fits = [c for c in range(8, cfg.crop_size + 1) if tap_size(c, cfg.ms_layer) == side]
    return f"{fits[0]} to {fits[-1]} pixels"


def _shapes(cfg: TrainConfig, num_classes: int) -> dict[str, tuple[int, ...]]:
    return _built_shapes(json.dumps(cfg.to_dict(), sort_keys=True, default=str), num_classes)


@cache
def _built_shapes(key: str, num_classes: int) -> dict[str, tuple[int, ...]]:
    cfg = TrainConfig.from_dict(json.loads(key))
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(cfg, num_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def schedule_plan(
    configs: list[TrainConfig],
    schedule: FidelitySchedule,
    reduction_factor: float,
    shared_epochs: int | None = None,
    clips: dict[str, int] = GTEA61_CLIPS,
) -> dict[str, Any]:
    """What a fidelity schedule costs on ``configs`` (a search's trials), counted on ``clips``.

    ``rungs``: each stretch of epochs of the first trial (the rungs, then full size) with its
    size, its FLOPs per epoch and the trials that reach it when each rung promotes
    1/``reduction_factor`` of them (as a synchronous halving would; ASHA's asynchronous
    decisions promote at least that many early in a search). ``schedule_flops``: the search under
    that assumption; ``grid_flops``: every trial at full size; ``shared_flops``: the same grid
    with prefix sharing (``shared_epochs``: the trial-epochs it trains).
    """
    first = configs[0]
    epochs = first.stage_settings(first.stages[-1]).epochs or 0
    segments = schedule.segments(epochs, first.frames, first.crop_size)
    rows = []
    total = 0.0
    for k, (start, end, frames, crop) in enumerate(segments):
        reaching = math.ceil(len(configs) / reduction_factor**k)
        per_epoch = [
            epoch_flops(
                cfg,
                clips["classes"],
                clips["train"],
                clips["val"],
                frames=frames if k < len(schedule.rungs) else None,
                crop_size=crop if k < len(schedule.rungs) else None,
            )
            for cfg in configs
        ]
        mean = sum(per_epoch) / len(per_epoch)
        total += reaching * mean * (end - start + 1)
        rows.append(
            {
                "rung": str(k + 1) if k < len(schedule.rungs) else "full",
                "epochs": [start, end],
                "frames": frames,
                "crop_size": crop,
                "epoch_flops": mean,
                "trials": reaching,
            }
        )
    full = [trial_flops(cfg, FidelitySchedule(), clips) for cfg in configs]
    grid = sum(full)
    trial_epochs = sum(cfg.total_epochs for cfg in configs)
    shared = grid * shared_epochs / trial_epochs if shared_epochs is not None else None
    return {
        "clips": dict(clips),
        "reduction_factor": reduction_factor,
        "rungs": rows,
        "trial_flops": full[0],
        "grid_flops": grid,
        "shared_flops": shared,
        "schedule_flops": total,
    }
