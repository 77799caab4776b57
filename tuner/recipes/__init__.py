"""One recipe per model family: what a model reads, how it is built, how its step runs.

Adding a model to egotune takes its module in :mod:`models` (registered there with
``register_model``) and one recipe module here, imported below; the configuration's model names,
the report's default settings, the engine's inputs, losses and optimiser groups all come from the
recipe. Recipes import torch only when a model runs, so the configuration stays torch-free.
"""

# Registration order is the order messages list the models in.
from tuner.recipes import _rgb, _flow, _two_stream, _motion, _repflow  # noqa: F401, I001
from tuner.recipes._recipe import (
    RECIPES,
    Recipe,
    StepOutput,
    build_model,
    load_model_state,
    recipe_for,
    register_recipe,
)

__all__ = [
    "RECIPES",
    "Recipe",
    "StepOutput",
    "build_model",
    "load_model_state",
    "recipe_for",
    "register_recipe",
]
