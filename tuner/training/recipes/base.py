"""The recipe of a model family, and the registry the configuration and the engine read.

A :class:`Recipe` is everything egotune knows about training one registered model: the dataset
modalities it reads, its keyword arguments from a configuration, how it is built with its
starting weights, how one batch becomes its loss, whether it has the report's two stages, the
report's optimisation settings per stage, and its learning-rate and schedule special cases.

The registry is read by the configuration, which imports neither torch nor ray, so recipe modules
import torch and :mod:`models` inside the functions that run a model, never at import time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tuner.training.recipes.options import Option

if TYPE_CHECKING:
    from torch import Tensor, nn

    from tuner.training.config import TrainConfig

__all__ = [
    "OPTIONS",
    "RECIPES",
    "Recipe",
    "StepOutput",
    "build_model",
    "import_recipe_modules",
    "load_model_state",
    "model_weights",
    "recipe_for",
    "recipe_modules",
    "register_recipe",
    "unregister_recipe",
]


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


StepFn = Callable[["nn.Module", dict[str, "Tensor"], "TrainConfig", int, bool], StepOutput]
KwargsFn = Callable[["TrainConfig", int], dict[str, Any]]
BuildFn = Callable[["TrainConfig", int], "nn.Module"]


@dataclass(frozen=True)
class Recipe:
    """How egotune trains one registered model (see the module docstring)."""

    model: str
    """Registered model name (``models.create_model``) and the configuration's ``model``."""
    modalities: tuple[str, ...]
    """Dataset modalities the model consumes (subset of rgb, flow, mmaps)."""
    step: StepFn
    """One batch -> :class:`StepOutput` (``model, batch, config, stage, train``)."""
    model_kwargs: KwargsFn
    """The model's keyword arguments from a configuration and a class count."""
    defaults: Mapping[int, Mapping[str, Any]]
    """The report's optimisation settings per stage: ``StageSettings`` fields."""
    staged: bool = True
    """Trains in the report's two stages; otherwise in one phase (stage 1)."""
    static: bool = False
    """Batches also carry a static clip (one frame repeated)."""
    aux_names: tuple[str, ...] = ()
    """Auxiliary losses its step reports."""
    build: BuildFn | None = None
    """Builds the model with its starting weights; ``None``: ``create_model`` with
    :attr:`model_kwargs`, then a stage-2 run's ``init_checkpoint``."""
    per_epoch_decay: bool = False
    """Decay the learning rate by gamma every epoch (StepLR) instead of at the milestones."""
    group_lrs: Mapping[str, Callable[[TrainConfig, float], float]] = field(default_factory=dict)
    """Learning rate of an optimiser group other than ``main``, from the base rate."""
    eval_flow_segments: bool = False
    """Validation averages ``flow_segments`` flow stacks per video."""
    warnings: Callable[[TrainConfig], list[str]] | None = None
    """Valid settings that depart from the report, one line each naming the key."""
    options: tuple[Option, ...] = ()
    """The configuration keys the model family reads (:mod:`.options`)."""
    check: Callable[[TrainConfig], None] | None = None
    """Checks of its options together (each alone is checked by its own ``check``); raises
    ``ValueError`` naming a key. Every configuration is checked, whatever its model, as every
    configuration has every option."""

    def stage_defaults(self, stage: int) -> Mapping[str, Any]:
        """The report's settings of ``stage`` (single-phase models: their one phase)."""
        return self.defaults[stage if self.staged else 1]


_PACKAGE = __name__.rpartition(".")[0]
RECIPES: dict[str, Recipe] = {}
"""Model name -> recipe, in registration order (the order messages list models in)."""
OPTIONS: dict[str, Option] = {}
"""Option name -> its declaration, over every registered recipe, in registration order: the
configuration's keys beyond its core ones."""


def register_recipe(recipe: Recipe) -> Recipe:
    """Add ``recipe`` to :data:`RECIPES` and its options to :data:`OPTIONS`.

    A second recipe for one model is an error, and so is an option declared twice differently
    (two families that read one key list the same :class:`Option`).
    """
    if recipe.model in RECIPES:
        raise ValueError(f"model {recipe.model!r} already has a recipe")
    for option in recipe.options:
        known = OPTIONS.get(option.name)
        if known is not None and known != option:
            raise ValueError(
                f"{recipe.model}: option {option.name!r} is already declared otherwise; "
                "list the same Option in both recipes"
            )
    RECIPES[recipe.model] = recipe
    for option in recipe.options:
        OPTIONS.setdefault(option.name, option)
    return recipe


def unregister_recipe(model: str) -> None:
    """Forget the recipe of ``model`` and the options no other recipe lists (a notebook
    defining the family again, a test's own family)."""
    recipe = RECIPES.pop(model, None)
    if recipe is None:
        return
    still = {option.name for other in RECIPES.values() for option in other.options}
    for option in recipe.options:
        if option.name not in still:
            OPTIONS.pop(option.name, None)


def recipe_modules() -> tuple[str, ...]:
    """The modules outside egotune that registered recipes (a researcher's own family): a Ray
    worker imports them before it builds a trial's configuration. A recipe's module is the one
    its ``step`` function is defined in."""
    modules = (recipe.step.__module__ for recipe in RECIPES.values())
    return tuple(dict.fromkeys(m for m in modules if not m.startswith(f"{_PACKAGE}.")))


def import_recipe_modules(modules: Iterable[str]) -> None:
    """Import ``modules`` (from :func:`recipe_modules` of the driver), which register their
    recipes; one that cannot be imported here is an error naming it."""
    for name in modules:
        if name == "__main__":
            raise ValueError(
                "a model recipe registered in a script (__main__) cannot be imported by Ray's "
                "workers: register it in a module they can import"
            )
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(
                f"model recipe module {name}: not importable on this node ({exc}); install it "
                "there or ship it with the job (Ray's runtime_env py_modules)"
            ) from None


def recipe_for(model: str) -> Recipe:
    """The recipe of ``model``; an unknown name is a ``ValueError`` naming ``model``."""
    try:
        return RECIPES[model]
    except KeyError:
        raise ValueError(f"model: no recipe for {model!r} (known: {', '.join(RECIPES)})") from None


def model_weights(cfg: TrainConfig) -> str | None:
    """The backbone ``weights`` argument of the models: ``None`` for random initialisation."""
    return None if cfg.weights.lower() == "none" else cfg.weights


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The model of ``cfg`` with ``num_classes`` outputs and its configured starting weights."""
    from models import create_model

    recipe = recipe_for(cfg.model)
    if recipe.build is not None:
        return recipe.build(cfg, num_classes)
    model = create_model(cfg.model, **recipe.model_kwargs(cfg, num_classes))
    if cfg.init_checkpoint is not None and cfg.stage == "2":
        load_model_state(model, cfg.init_checkpoint, strict=False)
    return model


def load_model_state(model: nn.Module, path: str, *, strict: bool) -> None:
    """Load the ``model`` weights stored in an egotune checkpoint file into ``model``.

    With ``strict=False`` a stage-1 Ego-RNN may initialise a model with extra heads (MS, SD); keys
    the checkpoint has but the model lacks, or tensors of another shape, are still errors.
    """
    from tuner.training.checkpoints.files import CheckpointError, load_checkpoint

    state = load_checkpoint(path)
    weights: dict[str, Tensor] | None = state.get("model")
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path}: checkpoint holds no model weights")
    own = model.state_dict()
    unexpected = sorted(set(weights) - set(own))
    mismatched = sorted(k for k in weights if k in own and weights[k].shape != own[k].shape)
    if unexpected or mismatched:
        shown = ", ".join((unexpected + mismatched)[:5])
        raise CheckpointError(
            f"{path}: weights do not fit model {type(model).__name__} ({shown}); "
            "check that the checkpoint comes from the matching model, backbone and class count"
        )
    missing = sorted(set(own) - set(weights))
    if missing and strict:
        raise CheckpointError(f"{path}: checkpoint lacks weights for {', '.join(missing[:5])}")
    model.load_state_dict(weights, strict=False)
