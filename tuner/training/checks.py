"""Checks of a training configuration: each raises ``ValueError`` whose message starts with the key.

:class:`tuner.training.config.TrainConfig` and :class:`tuner.training.config.StageSettings` call
them on construction; they read attributes only, so this module does not import the configuration.
The core keys are checked here; each model family's options by the checks its recipe declares
(:mod:`tuner.training.recipes.options`).
"""

from __future__ import annotations

from typing import Any

from tuner.training.checkpoints.policy import check_checkpoint_every
from tuner.training.recipes import OPTIONS, RECIPES, recipe_for
from tuner.training.recipes.options import (
    LIMIT_REASON,
    check_bool,
    check_choice,
    check_int,
    check_learning_rate,
    check_path,
    check_positive,
    is_number,
)

__all__ = [
    "COMPILE_MODES",
    "LIMITS",
    "MODEL_NAMES",
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

LIMITS = {
    "epochs": 100_000,
    "frames": 512,
    "batch_size": 4096,
    "crop_size": 1024,
    "num_workers": 256,
}
"""Largest accepted value of each size key: far beyond the report (750 epochs, 25 frames,
224 px, 512 ConvLSTM channels), and small enough that no configuration is sized to fail in an
allocator or to plan a search that never ends."""
MODEL_NAMES = tuple(RECIPES)
"""Every model with a recipe, in registration order."""
COMPILE_MODES = ("off", "default", "reduce-overhead", "auto")
"""Values of ``compile`` (:mod:`tuner.training.device`)."""


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


def validate_stage_settings(s: Any, prefix: str) -> None:
    """Check (and coerce in place) the optimisation settings of ``s``."""
    object.__setattr__(s, "milestones", coerce_number(s.milestones))
    for name in ("lr", "weight_decay", "gamma"):
        object.__setattr__(s, name, coerce_number(getattr(s, name)))
    if s.optimizer is not None:
        check_choice(f"{prefix}optimizer", s.optimizer, ("adam", "sgd"))
    if s.lr is not None:
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
            f"{name}: epochs up to {LIMITS['epochs']:,}, got {value[-1]:,} ({LIMIT_REASON})"
        )


def validate_config(cfg: Any) -> None:
    """Every check of a ``TrainConfig``."""
    check_choice("model", cfg.model, tuple(RECIPES))
    check_choice("stage", cfg.stage, ("1", "2", "both"))
    check_int("frames", cfg.frames, 1, LIMITS["frames"])
    check_int("batch_size", cfg.batch_size, 1, LIMITS["batch_size"])
    validate_stage_settings(cfg, prefix="")  # the last stage's settings sit on cfg itself
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
    for name in ("channels_last", "pin_memory", "drop_last"):
        check_bool(name, getattr(cfg, name))
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
    if cfg.init_checkpoint is not None:
        check_path("init_checkpoint", cfg.init_checkpoint)
    for name, option in OPTIONS.items():
        option.validate(cfg.options[name])
    for check in dict.fromkeys(r.check for r in RECIPES.values() if r.check is not None):
        check(cfg)
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
