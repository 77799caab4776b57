"""Model recipes: one per registered model, and what the configuration and engine read from them."""

from __future__ import annotations

import pytest

from models import list_models, model_defaults
from tests.conftest import tiny_config_values
from tuner.training.config import MODEL_NAMES, TrainConfig, report_defaults
from tuner.training.recipes import RECIPES, recipe_for


def test_every_registered_model_has_exactly_one_recipe():
    assert sorted(RECIPES) == list_models()
    assert tuple(RECIPES) == MODEL_NAMES


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_kwargs_are_keywords_the_model_takes(name):
    config = TrainConfig.from_dict(tiny_config_values(model=name))
    kwargs = recipe_for(name).model_kwargs(config, 4)
    assert set(kwargs) <= set(model_defaults(name))


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_report_defaults_come_from_the_recipe(name):
    recipe = recipe_for(name)
    for stage in (1, 2) if recipe.staged else (1,):
        settings = report_defaults(name, stage)
        assert settings.lr == recipe.stage_defaults(stage)["lr"]
        assert None not in (settings.optimizer, settings.epochs, settings.gamma)


def test_an_unknown_model_names_the_key():
    with pytest.raises(ValueError, match=r"model: .*ego_rnn2"):
        recipe_for("ego_rnn2")
