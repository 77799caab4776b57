"""Training configuration: the key names every search-space file and ``--set`` flag uses.

A :class:`TrainConfig` is frozen and validated on construction; an invalid value raises
``ValueError`` whose message starts with the field name. Optimisation settings left at ``None``
take the report's value for the chosen model and stage (:func:`report_defaults`), so
``TrainConfig(model="flow_resnet34")`` trains flow with SGD, lr 1e-2, 750 epochs as in the report.

This module does not import ray or torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

from tuner.hints import did_you_mean
from tuner.training.checks import (
    MODEL_NAMES,
    MS_LAYERS,
    coerce_number,
    is_number,
    looks_numeric,
    validate_config,
    validate_stage_settings,
)
from tuner.training.recipes import recipe_for

__all__ = [
    "MAX_YAML_DEPTH",
    "MODEL_NAMES",
    "RUNTIME_KEYS",
    "SCHEDULE_KEYS",
    "AuxWeights",
    "StageSettings",
    "TrainConfig",
    "config_warnings",
    "flatten_config",
    "load_yaml",
    "parse_overrides",
    "report_defaults",
    "yaml_error_text",
]

RUNTIME_KEYS = frozenset(
    {"device", "num_workers", "pin_memory", "frame_store", "frame_store_dir", "checkpoint_every"}
)
"""Keys that change how a run executes but not what it computes: a resume may change them."""
SCHEDULE_KEYS = ("optimizer", "lr", "weight_decay", "epochs", "milestones", "gamma")
"""Keys of a stage's optimisation settings (:class:`StageSettings`): top-level for the last stage,
``stage1.<key>`` for stage 1 of ``stage: both``."""


@dataclass(frozen=True)
class StageSettings:
    """Optimisation settings of one training stage. ``None`` takes the report's default."""

    optimizer: str | None = None
    """``adam`` (eps 1e-4) or ``sgd`` (momentum 0.9)."""
    lr: float | None = None
    """Base learning rate."""
    weight_decay: float | None = None
    """L2 weight decay passed to the optimiser."""
    epochs: int | None = None
    """Number of epochs of the stage."""
    milestones: tuple[int, ...] | None = None
    """MultiStepLR milestones, in epochs, stepped at the end of each epoch."""
    gamma: float | None = None
    """Multiplicative LR decay at each milestone (per epoch for the two-stream StepLR)."""

    def __post_init__(self) -> None:
        validate_stage_settings(self, prefix="")


@dataclass(frozen=True)
class AuxWeights:
    """Weights of the auxiliary losses added to the action cross-entropy."""

    ms: float = 1.0
    """Weight of the motion-segmentation loss (report: L = L_c + alpha * L_ms, alpha = 1)."""
    sd: float = 1.0
    """Weight of the static-dynamic discriminator loss (report's best: 0.1)."""

    def __post_init__(self) -> None:
        for name in ("ms", "sd"):
            value = getattr(self, name)
            if not is_number(value) or value < 0 or not math.isfinite(value):
                raise ValueError(f"{name}: must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one training run (one trial of a search)."""

    model: str = "ego_rnn"
    """Registered model name: one of ``MODEL_NAMES``."""
    stage: str = "2"
    """Training stage: ``1``, ``2`` or ``both`` (stage 1, then stage 2 from the best stage-1 state).
    Models without stages (flow_resnet34, two_stream) accept ``1`` only as a synonym of their single
    phase and ignore the difference."""
    frames: int = 7
    """Frames T sampled per RGB clip with the report's linspace rule."""
    batch_size: int = 32
    """Clips per training batch."""
    epochs: int | None = None
    """Epochs of the (last) stage; ``None`` takes the report's value."""
    optimizer: str | None = None
    """``adam`` (eps 1e-4) or ``sgd`` (momentum 0.9); ``None`` takes the report's choice."""
    lr: float | None = None
    """Base learning rate; ``None`` takes the report's value."""
    weight_decay: float | None = None
    """Weight decay; ``None`` takes the report's value."""
    milestones: tuple[int, ...] | None = None
    """MultiStepLR milestones in epochs; ``None`` takes the report's value."""
    gamma: float | None = None
    """LR decay factor; ``None`` takes the report's value."""
    lr_flow: float = 1e-4
    """Learning rate of the flow network's layer4 in the two-stream model."""
    lr_repflow_scale: float = 0.01
    """Learning-rate multiplier of the representation-flow layer's TV-L1 parameters (theta,
    lambda, tau, derivative kernels): 0.01 as in the official code; its bottleneck, expansion and
    BatchNorm train at the base rate."""
    stage1: StageSettings = field(default_factory=StageSettings)
    """Stage-1 optimisation settings used when ``stage`` is ``both``."""
    alpha: AuxWeights = field(default_factory=AuxWeights)
    """Auxiliary loss weights: ``alpha.ms`` and ``alpha.sd``."""
    crop_size: int = 224
    """Side of the square crop fed to the network (smaller for CPU runs)."""
    seed: int = 0
    """Seed of torch, numpy and python RNGs and of the data order."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``."""
    precision: str = "fp32"
    """``fp32``, or ``bf16`` autocast (CUDA only)."""
    channels_last: bool = False
    """Use the channels_last memory format for the CNN (CUDA only)."""
    compile: str = "off"
    """``torch.compile`` of the model's modules (CUDA only): ``off``, ``default``,
    ``reduce-overhead`` (CUDA graphs) or ``auto`` (``reduce-overhead`` for long runs); see
    docs/performance.md."""
    num_workers: int = 2
    """DataLoader worker processes (0 loads in the training process)."""
    pin_memory: bool = False
    """Pin host memory of batches (useful with CUDA)."""
    drop_last: bool = True
    """Drop the last incomplete training batch, as the report's notebooks do (341 -> 320 GTEA61
    training clips per epoch at batch 32); the original Ego-RNN code keeps it (``false``)."""
    frame_store: str = "auto"
    """Read frames from the node's decoded-frame store instead of decoding PNG files: ``on``,
    ``off``, or ``auto`` (on unless the store cannot be built there, e.g. the disk lacks the
    space; the run then decodes PNG files and warns). Same tensors either way (docs/data.md)."""
    checkpoint_every: int | str = "auto"
    """Epochs between checkpoints of the full resume state (stage ends and the end of the run
    always checkpoint); ``auto`` spaces them so checkpointing costs at most about 5 % of the
    measured epoch (docs/performance.md). Changing it does not change what a run computes."""
    frame_store_dir: str | None = None
    """Folder of the decoded-frame stores, on a local disk; ``None`` takes
    ``$EGOTUNE_CACHE_DIR/frames``, else ``$XDG_CACHE_HOME/egotune/frames`` or
    ``~/.cache/egotune/frames``."""
    train_users: tuple[str, ...] = ("S1", "S3", "S4")
    """Users of the training split."""
    val_users: tuple[str, ...] = ("S2",)
    """Users of the validation split (the report validates and tests on S2)."""
    # -- model options ---------------------------------------------------------------------
    backbone: str = "resnet34"
    """ResNet depth of the RGB and flow backbones: resnet18, resnet34 or resnet50."""
    weights: str = "imagenet"
    """Backbone initialisation: ``imagenet`` (torchvision), ``none`` (random) or a local file."""
    bn_calibration: str = "auto"
    """Set BatchNorm running statistics from one pass over the training data before training:
    ``on``, ``off``, or ``auto`` (on for random weights that start no checkpoint)."""
    cam: bool = True
    """Use the CAM spatial attention in the Ego-RNN family."""
    mem_size: int = 512
    """ConvLSTM channels."""
    flow_stack: int = 5
    """Flow frames stacked per sample (2 * flow_stack input channels)."""
    flow_segments: int = 1
    """Flow stacks averaged at evaluation (the report's training-time value is 1)."""
    ms_layer: str = "conv5"
    """Backbone tap of the motion-segmentation head: conv5 (7x7), conv4 (14x14) or conv3 (28x28)."""
    ms_task: str = "classification"
    """Motion-segmentation task: ``classification`` (2 logits per cell) or ``regression``."""
    ms_target: str = "binary"
    """mmap target: ``binary`` (0/1) or ``gray`` (cell mean, regression only)."""
    ms_downsample: str = "point"
    """mmap downsampling: ``point`` (cell centres) or ``grid`` (block mean, the grid technique)."""
    ms_loss_norm: str = "frame_sum"
    """``frame_sum`` (the report's sum over cells / (B*T)) or ``pixel`` (mean over cells, l^2
    times smaller)."""
    ms_dropout: float | None = None
    """Dropout of the motion-segmentation head before its linear layer; ``None`` takes the
    report's: 0.5 on conv5, 0.2 on conv4 / conv3."""
    sd_train_conv5: bool = False
    """Let the static-dynamic loss reach conv5 (layer4) as well as the ConvLSTM and its head."""
    repflow_iters: int = 10
    """TV-L1 iterations of the representation-flow layer."""
    init_checkpoint: str | None = None
    """Stage-1 checkpoint a stage-2 run starts from (path)."""
    rgb_checkpoint: str | None = None
    """Two-stream: trained Ego-RNN (stage 2) checkpoint."""
    flow_checkpoint: str | None = None
    """Two-stream: trained flow_resnet34 checkpoint."""

    def __post_init__(self) -> None:
        _coerce(self)
        validate_config(self)

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a (possibly nested) mapping; unknown keys raise ``ValueError`` naming them."""
        kwargs: dict[str, Any] = {}
        names = {f.name for f in fields(cls)}
        for key, value in values.items():
            if key not in names:
                raise ValueError(f"{key}: unknown key ({_known_keys_hint(key, names)})")
            if key == "stage1":
                kwargs[key] = _nested(StageSettings, value, "stage1")
            elif key == "alpha":
                kwargs[key] = _nested(AuxWeights, value, "alpha")
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (nested keys as ``stage1`` / ``alpha`` mappings)."""
        merged = self.to_dict()
        for key, value in changes.items():
            if key in ("stage1", "alpha") and isinstance(value, Mapping):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        return TrainConfig.from_dict(merged)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain-python form (tuples become lists), YAML/JSON friendly."""
        return _plain(dataclasses.asdict(self))

    # -- derived values ---------------------------------------------------------------------
    @property
    def stages(self) -> tuple[int, ...]:
        """Stages this run executes, in order."""
        if not recipe_for(self.model).staged:
            return (1,)
        return (1, 2) if self.stage == "both" else (int(self.stage),)

    @property
    def ms_size(self) -> int:
        """Side l of the motion-segmentation map for ``ms_layer``."""
        return MS_LAYERS[self.ms_layer]

    def stage_settings(self, stage: int) -> StageSettings:
        """Fully resolved optimisation settings for ``stage`` (no ``None`` left)."""
        defaults = report_defaults(self.model, stage)
        if self.stage == "both" and stage == 1:
            explicit = self.stage1
        else:
            explicit = StageSettings(
                optimizer=self.optimizer,
                lr=self.lr,
                weight_decay=self.weight_decay,
                epochs=self.epochs,
                milestones=self.milestones,
                gamma=self.gamma,
            )
        resolved = {
            f.name: getattr(explicit, f.name)
            if getattr(explicit, f.name) is not None
            else getattr(defaults, f.name)
            for f in fields(StageSettings)
        }
        return StageSettings(**resolved)


def config_warnings(cfg: TrainConfig) -> list[str]:
    """Settings that are valid but depart from the report in a way worth a line, one per key."""
    departures = recipe_for(cfg.model).warnings
    return departures(cfg) if departures is not None else []


def report_defaults(model: str, stage: int) -> StageSettings:
    """The report's optimisation settings for ``model`` at ``stage`` (section 4, notes §4.2)."""
    return StageSettings(**recipe_for(model).stage_defaults(stage))


def flatten_config(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings with ``.``-joined keys (``alpha.ms``), as the Parquet columns do."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings (``--set``) into a nested mapping.

    Values are read as YAML scalars or flow sequences (``lr=1e-4``, ``milestones=[30,70]``,
    ``cam=false``); dotted keys (``alpha.ms=0.5``) nest. Nothing is ever evaluated as code.
    """
    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected key=value")
        try:
            value = load_yaml(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            problem = yaml_error_text(exc, with_position=False)
            raise ValueError(f"--set {key}: cannot parse value {raw!r}: {problem}") from None
        except ValueError as exc:
            raise ValueError(f"--set {key}: {exc}") from None
        if isinstance(value, str) and looks_numeric(value):
            value = float(value)  # YAML 1.1 reads "1e-4" as a string
        target = result
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise ValueError(f"--set {key}: {parent} is not a nested key")
        target[leaf] = value
    return result


MAX_YAML_DEPTH = 32
"""Deepest nesting of lists and mappings a space file or a ``--set`` value may have (a space
file needs five or so)."""


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` of ``text``; ``ValueError`` when it nests deeper than
    :data:`MAX_YAML_DEPTH` (PyYAML itself would fail with a ``RecursionError``)."""
    too_deep = f"nested more than {MAX_YAML_DEPTH} lists or mappings deep"
    try:
        value = yaml.safe_load(text)
    except RecursionError:
        raise ValueError(too_deep) from None
    level = [value]
    for _ in range(MAX_YAML_DEPTH + 1):
        level = [
            child
            for item in level
            if isinstance(item, list | dict)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return value
    raise ValueError(too_deep)


def yaml_error_text(exc: yaml.YAMLError, *, with_position: bool = True) -> str:
    """A PyYAML error on one line, e.g. ``line 4, column 5: expected ',' or ']', but got ':'
    (while parsing a flow sequence that starts at line 3, column 10)``.

    PyYAML's own message spans several lines and quotes the source; error messages here are one
    line, so only the positions (1-based) and the problem are kept.
    """
    problem = getattr(exc, "problem", None)
    if problem is None:
        return " ".join(str(exc).split())
    mark = getattr(exc, "problem_mark", None)
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    text = str(problem)
    if context:
        started = f" that starts at {_position(context_mark)}" if context_mark else ""
        text += f" ({context}{started})" if with_position else f" ({context})"
    if with_position and mark is not None:
        return f"{_position(mark)}: {text}"
    return text


def _position(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _known_keys_hint(key: str, names: Iterable[str]) -> str:
    return did_you_mean(key, sorted(names)) or f"known keys: {', '.join(sorted(names))}"


def _nested(cls: type, value: Any, name: str) -> Any:
    if isinstance(value, cls):
        return value
    if cls is AuxWeights and is_number(value):
        return AuxWeights(ms=float(value), sd=float(value))
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: expected a mapping, got {value!r}")
    known = {f.name for f in fields(cls)}
    for key in value:
        if key not in known:
            raise ValueError(f"{name}.{key}: unknown key ({_known_keys_hint(key, known)})")
    try:
        return cls(**{k: coerce_number(v) for k, v in value.items()})
    except ValueError as exc:
        raise ValueError(f"{name}.{exc}") from None


def _coerce(cfg: TrainConfig) -> None:
    """Normalise YAML-friendly spellings in place (ints for stage, lists for tuples)."""
    setattr_ = object.__setattr__
    if isinstance(cfg.stage, int) and not isinstance(cfg.stage, bool):
        setattr_(cfg, "stage", str(cfg.stage))
    for name in ("bn_calibration", "frame_store"):
        value = getattr(cfg, name)
        if isinstance(value, bool):  # YAML reads on/off as booleans
            setattr_(cfg, name, "on" if value else "off")
    for name in ("milestones", "train_users", "val_users"):
        value = getattr(cfg, name)
        if isinstance(value, list):
            setattr_(cfg, name, tuple(value))
    for name in ("lr", "weight_decay", "gamma", "lr_flow", "lr_repflow_scale", "ms_dropout"):
        value = getattr(cfg, name)
        numeric_text = isinstance(value, str) and looks_numeric(value)
        if numeric_text or (isinstance(value, int) and not isinstance(value, bool)):
            setattr_(cfg, name, float(value))
    if isinstance(cfg.stage1, Mapping):
        setattr_(cfg, "stage1", _nested(StageSettings, cfg.stage1, "stage1"))
    if isinstance(cfg.alpha, Mapping) or is_number(cfg.alpha):
        setattr_(cfg, "alpha", _nested(AuxWeights, cfg.alpha, "alpha"))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
