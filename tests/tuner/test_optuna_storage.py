"""An Optuna search leaves a study in its experiment folder that optuna-dashboard can open.

A real tiny search on a local Ray, then the study is opened from ``<experiment>/optuna.db`` the way
``optuna-dashboard sqlite:///<experiment>/optuna.db`` does, and compared with the Parquet tables.
"""

from __future__ import annotations

import json

import numpy as np
import optuna
import pandas as pd
import pytest

from tests.conftest import tiny_config_values
from tests.tuner.test_search import assert_one_row_per_trial_that_ran
from tuner.spaces import parse_space
from tuner.tune.schedulers import OPTUNA_DB, optuna_storage_url
from tuner.tune.search import SearchOptions, run_search

EPOCHS = 2
SAMPLES = 2


def optuna_space():
    fixed = {
        key: value
        for key, value in tiny_config_values().items()
        if key not in ("epochs", "stage1", "device")
    }
    doc = {
        "fixed": {**fixed, "model": "ego_rnn", "stage": 1, "epochs": EPOCHS},
        "sample": {
            "lr": {"loguniform": [1e-4, 1e-2]},
            "milestones": {"choice": [[1], [1, 2]]},
        },
        "scheduler": {"algorithm": "optuna", "num_samples": SAMPLES, "seed": 0},
        "resources": {"cpus": 1, "gpus": 0},
    }
    return parse_space(doc, source="tpe_tiny.yaml", name="tpe_tiny")


def test_optuna_search_leaves_a_readable_study_of_its_completed_trials(
    local_ray, synthetic_root, tmp_path
):
    options = SearchOptions(
        data=synthetic_root, storage=tmp_path, name="study-run", verbose=0, argv=["test"]
    )
    outcome = run_search(optuna_space(), options)
    assert outcome.num_errors == 0
    assert_one_row_per_trial_that_ran(outcome.experiment_dir, trials=SAMPLES)
    database = outcome.experiment_dir / OPTUNA_DB
    assert database.is_file()

    # the name optuna-dashboard lists; named after the experiment, not the space file
    (summary,) = optuna.get_all_study_summaries(storage=optuna_storage_url(outcome.experiment_dir))
    assert summary.study_name == "study-run"
    study = optuna.load_study(study_name="study-run", storage=f"sqlite:///{database}")
    trials = pd.read_parquet(outcome.experiment_dir / "trials.parquet")
    epochs = pd.read_parquet(outcome.experiment_dir / "epochs.parquet")
    assert len(study.trials) == len(trials) == SAMPLES
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}

    for study_trial in study.trials:
        (row,) = np.flatnonzero(np.isclose(trials["lr"], study_trial.params["lr"], rtol=1e-9))
        trial = trials.iloc[row]
        # Optuna holds list choices as JSON text, as the Parquet table does
        assert json.loads(study_trial.params["milestones"]) == json.loads(trial["milestones"])
        run = epochs[epochs["trial_id"] == trial["trial_id"]].sort_values("epoch")
        assert study_trial.value == pytest.approx(run["val_acc"].iloc[-1])
        assert study_trial.intermediate_values == pytest.approx(
            dict(zip(run["epoch"], run["val_acc"], strict=True))
        )
