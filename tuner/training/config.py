"""Training configuration: the key names every search-space file and ``--set`` flag uses.

A :class:`TrainConfig` is frozen and validated on construction; an invalid value raises
``ValueError`` whose message starts with the field name. Optimisation settings left at ``None``
take the report's value for the chosen model and stage (:func:`report_defaults`), so
``TrainConfig(model="flow_resnet34")`` trains flow with SGD, lr 1e-2, 750 epochs as in the report.

This module does not import ray or torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

from tuner.hints import did_you_mean
from tuner.training.checks import (
    MODEL_NAMES,
    coerce_number,
    is_number,
    looks_numeric,
    validate_config,
    validate_stage_settings,
)
from tuner.training.recipes import OPTIONS, recipe_for
from tuner.training.recipes.options import Option

__all__ = [
    "MAX_YAML_DEPTH",
    "MODEL_NAMES",
    "RUNTIME_KEYS",
    "SCHEDULE_KEYS",
    "AuxWeights",
    "StageSettings",
    "TrainConfig",
    "config_warnings",
    "core_keys",
    "flatten_config",
    "load_yaml",
    "nest_config",
    "parse_overrides",
    "registered_options",
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
_MUTABLE_CORE_KEYS = ("lr", "weight_decay", "alpha.ms", "alpha.sd")


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


@dataclass(frozen=True, init=False, eq=True)
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
    init_checkpoint: str | None = None
    """Stage-1 checkpoint a stage-2 run starts from (path)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """The model families' options (:data:`tuner.training.recipes.OPTIONS`), by key: read as
    attributes (``cfg.ms_layer``) and written as top-level keys everywhere (``ms_layer: conv4``
    in a space, ``--set ms_layer=conv4``, the ``ms_layer`` column), like the keys above. Every
    configuration has every registered option, at its default unless set."""

    def __init__(self, **values: Any) -> None:
        declared = registered_options()
        given = dict(values.pop("options", None) or {})
        for item in fields(self):
            if item.name == "options":
                continue
            if item.name in values:
                value = values.pop(item.name)
            elif item.default is not dataclasses.MISSING:
                value = item.default
            else:
                value = item.default_factory()  # type: ignore[operator]
            object.__setattr__(self, item.name, value)
        given.update({k: values.pop(k) for k in list(values) if k in declared})
        if values:
            key = next(iter(values))
            raise ValueError(f"{key}: unknown key ({_known_keys_hint(key, self.keys())})")
        options = {name: given.get(name, option.default) for name, option in declared.items()}
        object.__setattr__(self, "options", options)
        self.__post_init__()

    def __getattr__(self, name: str) -> Any:
        options = self.__dict__.get("options")
        if options is not None and name in options:
            return options[name]
        raise AttributeError(f"TrainConfig has no key {name!r}")

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True, default=str))

    def __post_init__(self) -> None:
        _coerce(self)
        validate_config(self)

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """Every top-level key: the core ones, then the registered options."""
        return (*core_keys(), *registered_options())

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The value of every top-level key when a configuration does not set it."""
        return TrainConfig().to_dict()

    @classmethod
    def mutable_keys(cls) -> tuple[str, ...]:
        """Keys a population search may change when a trial continues from another's state:
        they act from the next step on (the optimiser's rate and decay, the auxiliary loss
        weights, options declared ``mutable``), so a continuing trial applies them exactly; the
        schedule keys would not."""
        mutable = (name for name, option in registered_options().items() if option.mutable)
        return (*_MUTABLE_CORE_KEYS, *mutable)

    @classmethod
    def from_trial(cls, values: Mapping[str, Any]) -> TrainConfig:
        """The configuration of a trial's values: flat keys, dotted for nested ones
        (``alpha.ms``), as search spaces, Ray Tune's trial configs and the Parquet columns hold
        them, or nested mappings; keys starting with ``_`` (Tune-side entries of a trial's
        config) are not configuration and are left out. The inverse of :meth:`to_flat`."""
        return cls.from_dict(nest_config({k: v for k, v in values.items() if k[:1] != "_"}))

    def to_flat(self) -> dict[str, Any]:
        """Flat keys, nested ones dotted (``alpha.ms``): a trial's values, a table's columns."""
        return flatten_config(self.to_dict())

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a (possibly nested) mapping; unknown keys raise ``ValueError`` naming them."""
        kwargs: dict[str, Any] = {}
        names = set(cls.keys())
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
        """Nested plain-python form (tuples become lists), YAML/JSON friendly; the options are
        top-level keys."""
        values = {name: getattr(self, name) for name in core_keys()}
        values["stage1"] = dataclasses.asdict(self.stage1)
        values["alpha"] = dataclasses.asdict(self.alpha)
        return _plain({**values, **self.options})

    # -- derived values ---------------------------------------------------------------------
    @property
    def stages(self) -> tuple[int, ...]:
        """Stages this run executes, in order."""
        if not recipe_for(self.model).staged:
            return (1,)
        return (1, 2) if self.stage == "both" else (int(self.stage),)

    @property
    def total_epochs(self) -> int:
        """Epochs of the whole run: every stage's, in order (the reported ``epoch`` of the
        last)."""
        return sum(self.stage_settings(s).epochs or 0 for s in self.stages)

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
    for name in ("lr", "weight_decay", "gamma"):
        setattr_(cfg, name, _as_float(getattr(cfg, name)))
    options = dict(cfg.options)
    for name, option in registered_options().items():
        if _float_type(option.type):
            options[name] = _as_float(options[name])
        elif isinstance(options[name], list):
            options[name] = tuple(options[name])
    setattr_(cfg, "options", options)
    if isinstance(cfg.stage1, Mapping):
        setattr_(cfg, "stage1", _nested(StageSettings, cfg.stage1, "stage1"))
    if isinstance(cfg.alpha, Mapping) or is_number(cfg.alpha):
        setattr_(cfg, "alpha", _nested(AuxWeights, cfg.alpha, "alpha"))


def _as_float(value: Any) -> Any:
    numeric_text = isinstance(value, str) and looks_numeric(value)
    if numeric_text or (isinstance(value, int) and not isinstance(value, bool)):
        return float(value)
    return value


def _float_type(annotation: Any) -> bool:
    return annotation is float or float in getattr(annotation, "__args__", ())


def core_keys() -> tuple[str, ...]:
    """The configuration's own keys (its dataclass fields), without the families' options."""
    return _CORE_KEYS


def registered_options() -> dict[str, Option]:
    """Every registered recipe's options, by key (a key that is also a core key is an error)."""
    clash = sorted(set(OPTIONS) & set(_CORE_KEYS))
    if clash:
        raise ValueError(f"option {clash[0]!r} of a recipe is a core configuration key")
    return OPTIONS


def nest_config(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Turn dotted keys (``alpha.ms``) into nested mappings (``{"alpha": {"ms": ...}}``)."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        parent, dot, leaf = key.partition(".")
        if dot:
            nested.setdefault(parent, {})[leaf] = value
        else:
            nested[key] = value
    return nested


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


_CORE_KEYS = tuple(f.name for f in fields(TrainConfig) if f.name != "options")
