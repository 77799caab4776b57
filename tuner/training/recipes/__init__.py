"""One recipe per model family: what a model reads, how it is built, how its step runs.

Adding a model family to egotune takes its module in :mod:`models` and one recipe module here
(docs/models.md): every module of this package is imported below, in the order of
:data:`ORDER` and then by name. The configuration's model names and keys, the report's default
settings, the engine's inputs, losses and optimiser groups all come from the recipes. Recipes
import torch only when a model runs, so the configuration stays torch-free.
"""

import importlib
import pkgutil

from tuner.training.recipes.base import (
    OPTIONS,
    RECIPES,
    Recipe,
    StepOutput,
    build_model,
    import_recipe_modules,
    load_model_state,
    recipe_for,
    recipe_modules,
    register_recipe,
    unregister_recipe,
)

ORDER = ("rgb", "flow", "two_stream", "motion", "repflow")
"""Recipe modules registered first, in this order: the order messages list the models in."""

_found = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in ("base", *ORDER))
for _name in (*ORDER, *_found):
    importlib.import_module(f"{__name__}.{_name}")

__all__ = [
    "OPTIONS",
    "RECIPES",
    "Recipe",
    "StepOutput",
    "build_model",
    "import_recipe_modules",
    "load_model_state",
    "recipe_for",
    "recipe_modules",
    "register_recipe",
    "unregister_recipe",
]
