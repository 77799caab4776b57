"""A model family added from outside egotune (tests/tuner/toy_family.py: its model and its
recipe, with one option of its own) is searched like the report's: the space's keys are checked
against its option, Ray's workers import its module, the tables hold its option's column."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from models import unregister_model
from tests.tables import assert_every_row_once
from tuner.cli import main
from tuner.results import read_epochs, read_trials
from tuner.spaces import SpaceError, parse_space
from tuner.training.config import TrainConfig
from tuner.training.recipes import unregister_recipe
from tuner.tune.search import SearchOptions, run_search

MODULE = "tests.tuner.toy_family"
MODEL = "toy_mean"
SPACE = {
    "fixed": {
        "model": MODEL,
        "stage": 1,
        "weights": "none",
        "crop_size": 32,
        "frames": 2,
        "batch_size": 4,
        "num_workers": 0,
        "device": "cpu",
        "epochs": 3,
    },
    "grid": {"toy_width": [2, 16]},
    "scheduler": {"algorithm": "grid"},
    "resources": {"cpus": 1},
}


@pytest.fixture(scope="module", autouse=True)
def toy_family() -> Iterator[ModuleType]:
    """The family, registered by importing its module, and forgotten after this module's tests
    (the others count the registered models)."""
    module = importlib.import_module(MODULE)
    assert module.MODEL == MODEL
    yield module
    unregister_recipe(MODEL)
    unregister_model(MODEL)
    sys.modules.pop(MODULE, None)
    assert "toy_width" not in TrainConfig().to_dict()


def test_the_family_s_option_is_a_checked_configuration_key() -> None:
    config = TrainConfig.from_trial({"model": MODEL, "toy_width": 5})
    assert config.toy_width == 5 and config.to_flat()["toy_width"] == 5
    assert TrainConfig().toy_width == 8, "every configuration has every option"
    with pytest.raises(ValueError, match=r"^toy_width: must be an integer from 1 to 64"):
        TrainConfig(toy_width=65)
    with pytest.raises(SpaceError, match=r"grid\.toy_widht: unknown key \(did you mean toy_width"):
        parse_space({**SPACE, "grid": {"toy_widht": [2]}}, source="toy.yaml", name="toy")
    with pytest.raises(SpaceError, match=r"toy\.yaml: .*toy_width"):
        parse_space({**SPACE, "grid": {"toy_width": [0, 4]}}, source="toy.yaml", name="toy")


def test_spaces_keys_lists_the_family_s_option_with_its_description(capsys) -> None:
    assert main(["spaces", "keys", "--model", MODEL, "--json"]) == 0
    rows = {row["key"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["toy_width"] == {
        "key": "toy_width",
        "default": 8,
        "models": MODEL,
        "pbt": False,
        "about": "Hidden units of the toy model.",
    }
    assert "ms_layer" not in rows and rows["lr"]["pbt"] and rows["model"]["models"] == "all"


def test_a_space_over_a_family_registered_outside_egotune_runs_on_ray(
    synthetic_root: Path, tmp_path: Path, local_ray: None
) -> None:
    space = parse_space(SPACE, source="toy.yaml", name="toy")
    options = SearchOptions(
        data=synthetic_root, storage=tmp_path, name="toy", verbose=0, argv=["test"]
    )
    outcome = run_search(space, options)
    assert outcome.num_errors == 0
    experiment = outcome.experiment_dir
    assert_every_row_once(experiment, trials=2)
    trials = read_trials(experiment)
    assert sorted(trials["toy_width"]) == [2, 16]
    assert set(trials["model"]) == {MODEL}
    epochs = read_epochs(experiment)
    assert len(epochs) == 6 and epochs["train_loss"].notna().all()
