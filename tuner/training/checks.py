"""Checks of a training configuration: each raises ``ValueError`` whose message starts with the key.

:class:`tuner.training.config.TrainConfig` and :class:`tuner.training.config.StageSettings` call
them on construction; they read attributes only, so this module does not import the configuration.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from tuner.training.checkpoints.policy import check_checkpoint_every
from tuner.training.recipes import RECIPES, recipe_for

__all__ = [
    "COMPILE_MODES",
    "LIMITS",
    "MAX_LR",
    "MODEL_NAMES",
    "MS_LAYERS",
    "check_choice",
    "check_int",
    "check_learning_rate",
    "check_milestones",
    "check_positive",
    "coerce_number",
    "is_number",
    "looks_numeric",
    "validate_config",
    "validate_stage_settings",
]

MS_LAYERS = {"conv5": 7, "conv4": 14, "conv3": 28}
"""Motion-segmentation taps and their map side at 224 px."""
LIMITS = {
    "epochs": 100_000,
    "frames": 512,
    "batch_size": 4096,
    "crop_size": 1024,
    "mem_size": 8192,
    "flow_stack": 64,
    "flow_segments": 64,
    "repflow_iters": 1000,
    "num_workers": 256,
}
"""Largest accepted value of each size key: far beyond the report (750 epochs, 25 frames,
224 px, 512 ConvLSTM channels), and small enough that no configuration is sized to fail in an
allocator or to plan a search that never ends."""
_LIMIT_REASON = "a larger one is a typo or would not fit in memory"
MODEL_NAMES = tuple(RECIPES)
"""Every model with a recipe, in registration order."""
COMPILE_MODES = ("off", "default", "reduce-overhead", "auto")
"""Values of ``compile`` (:mod:`tuner.training.device`)."""


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def coerce_number(value: Any) -> Any:
    if isinstance(value, str) and looks_numeric(value):
        return float(value)
    if isinstance(value, list):
        return tuple(value)
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"{name}: must be one of {', '.join(map(str, options))}; got {value!r}")


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum:,}"
        raise ValueError(f"{name}: must be an integer {bound}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(
            f"{name}: must be an integer from {minimum} to {maximum:,}, got {value:,} "
            f"({_LIMIT_REASON})"
        )


def check_positive(name: str, value: Any, allow_zero: bool = False) -> None:
    ok = is_number(value) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: must be a finite number {bound}, got {value!r}")


MAX_LR = 10.0
"""Largest accepted learning rate: the report's are 1e-4 to 1e-2, and SGD or Adam with a rate
above 10 turns the first loss into infinity."""


def check_learning_rate(name: str, value: float) -> None:
    if value > MAX_LR:
        raise ValueError(
            f"{name}: at most {MAX_LR:g} (a larger rate diverges at once), got {value:g}"
        )


def validate_stage_settings(s: Any, prefix: str) -> None:
    """Check (and coerce in place) the optimisation settings of ``s``."""
    object.__setattr__(s, "milestones", coerce_number(s.milestones))
    for name in ("lr", "weight_decay", "gamma"):
        object.__setattr__(s, name, coerce_number(getattr(s, name)))
    if s.optimizer is not None:
        check_choice(f"{prefix}optimizer", s.optimizer, ("adam", "sgd"))
    if s.lr is not None:
        check_positive(f"{prefix}lr", s.lr)
        check_learning_rate(f"{prefix}lr", s.lr)
    if s.weight_decay is not None:
        check_positive(f"{prefix}weight_decay", s.weight_decay, allow_zero=True)
    if s.gamma is not None:
        check_positive(f"{prefix}gamma", s.gamma)
    if s.epochs is not None:
        check_int(f"{prefix}epochs", s.epochs, 1, LIMITS["epochs"])
    if s.milestones is not None:
        check_milestones(f"{prefix}milestones", s.milestones)


def check_milestones(name: str, value: Any) -> None:
    if not isinstance(value, tuple) or not all(
        isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in value
    ):
        raise ValueError(f"{name}: must be a list of positive integers, got {value!r}")
    if list(value) != sorted(set(value)):
        raise ValueError(f"{name}: must be strictly increasing, got {list(value)}")
    if value and value[-1] > LIMITS["epochs"]:
        raise ValueError(
            f"{name}: epochs up to {LIMITS['epochs']:,}, got {value[-1]:,} ({_LIMIT_REASON})"
        )


def validate_config(cfg: Any) -> None:
    """Every check of a ``TrainConfig``."""
    check_choice("model", cfg.model, MODEL_NAMES)
    check_choice("stage", cfg.stage, ("1", "2", "both"))
    check_int("frames", cfg.frames, 1, LIMITS["frames"])
    check_int("batch_size", cfg.batch_size, 1, LIMITS["batch_size"])
    validate_stage_settings(cfg, prefix="")  # the last stage's settings sit on cfg itself
    check_positive("lr_flow", cfg.lr_flow)
    check_learning_rate("lr_flow", cfg.lr_flow)
    check_positive("lr_repflow_scale", cfg.lr_repflow_scale)
    check_int("crop_size", cfg.crop_size, 32, LIMITS["crop_size"])
    check_int("seed", cfg.seed, 0)
    if not isinstance(cfg.device, str) or not (
        cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:")
    ):
        raise ValueError(f"device: must be auto, cpu, cuda or cuda:N, got {cfg.device!r}")
    check_choice("precision", cfg.precision, ("fp32", "bf16"))
    check_choice("compile", cfg.compile, COMPILE_MODES)
    check_checkpoint_every(cfg.checkpoint_every)
    check_int("num_workers", cfg.num_workers, 0, LIMITS["num_workers"])
    for name in ("channels_last", "pin_memory", "drop_last", "cam", "sd_train_conv5"):
        if not isinstance(getattr(cfg, name), bool):
            raise ValueError(f"{name}: must be true or false, got {getattr(cfg, name)!r}")
    _validate_users(cfg)
    check_choice("backbone", cfg.backbone, ("resnet18", "resnet34", "resnet50"))
    if not isinstance(cfg.weights, str) or not cfg.weights:
        raise ValueError(f"weights: must be imagenet, none or a file path, got {cfg.weights!r}")
    check_choice("bn_calibration", cfg.bn_calibration, ("auto", "on", "off"))
    check_choice("frame_store", cfg.frame_store, ("auto", "on", "off"))
    if cfg.frame_store_dir is not None and (
        not isinstance(cfg.frame_store_dir, str) or not cfg.frame_store_dir
    ):
        raise ValueError(
            f"frame_store_dir: must be a folder path or null, got {cfg.frame_store_dir!r}"
        )
    check_int("mem_size", cfg.mem_size, 1, LIMITS["mem_size"])
    check_int("flow_stack", cfg.flow_stack, 1, LIMITS["flow_stack"])
    check_int("flow_segments", cfg.flow_segments, 1, LIMITS["flow_segments"])
    check_choice("ms_layer", cfg.ms_layer, tuple(MS_LAYERS))
    check_choice("ms_task", cfg.ms_task, ("classification", "regression"))
    check_choice("ms_target", cfg.ms_target, ("binary", "gray"))
    check_choice("ms_downsample", cfg.ms_downsample, ("point", "grid"))
    check_choice("ms_loss_norm", cfg.ms_loss_norm, ("pixel", "frame_sum"))
    if cfg.ms_target == "gray" and cfg.ms_task != "regression":
        raise ValueError("ms_target: gray targets need ms_task=regression")
    if cfg.ms_dropout is not None and not (is_number(cfg.ms_dropout) and 0 <= cfg.ms_dropout < 1):
        raise ValueError(f"ms_dropout: must be in [0, 1) or null, got {cfg.ms_dropout!r}")
    check_int("repflow_iters", cfg.repflow_iters, 1, LIMITS["repflow_iters"])
    for name in ("init_checkpoint", "rgb_checkpoint", "flow_checkpoint"):
        value = getattr(cfg, name)
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"{name}: must be a path or null, got {value!r}")
    if not recipe_for(cfg.model).staged and cfg.stage == "both":
        raise ValueError(f"stage: {cfg.model} has a single training phase; use stage 1 or 2")
    if cfg.stage == "both" and cfg.init_checkpoint is not None:
        raise ValueError("init_checkpoint: not used with stage=both (stage 2 starts from stage 1)")


def _validate_users(cfg: Any) -> None:
    for name in ("train_users", "val_users"):
        users = getattr(cfg, name)
        if not isinstance(users, tuple) or not users or not all(isinstance(u, str) for u in users):
            raise ValueError(
                f"{name}: must be a non-empty list of user folder names, got {users!r}"
            )
    overlap = set(cfg.train_users) & set(cfg.val_users)
    if overlap:
        raise ValueError(f"val_users: {sorted(overlap)} also in train_users; splits are by user")
