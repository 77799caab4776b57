import json
import sys
import textwrap

import pytest
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from tuner.errors import EgotuneError
from tuner.spaces import load_space
from tuner.training.config import TrainConfig, flatten_config
from tuner.tune.params import build_param_space, resolve_trial_config, trial_resources
from tuner.tune.schedulers import OPTUNA_DB, build_scheduler, build_search_alg, build_tune_config


def write_space(tmp_path, text, name="space.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return load_space(path)


def report_epochs(config):
    """A trainable that builds the real TrainConfig and reports six instant epochs."""
    cfg = TrainConfig.from_trial(resolve_trial_config(config))
    for epoch in range(1, 7):
        tune.report({"epoch": epoch, "val_acc": 100 * cfg.stage_settings(2).lr * epoch})


def fit(space, tmp_path, checkpoints=None):
    trainable = tune.with_resources(report_epochs, trial_resources(space))
    tuner = tune.Tuner(
        trainable,
        param_space=build_param_space(space, checkpoints),
        tune_config=build_tune_config(space, tmp_path / space.name),
        run_config=tune.RunConfig(name=space.name, storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    assert results.num_errors == 0
    return results


def as_flat(config):
    return json.dumps(flatten_config(resolve_trial_config(config)), sort_keys=True)


GRID = """
fixed: {model: ego_rnn_ms, stage: 2, epochs: 6, milestones: [3]}
points:
  - {lr: 1e-4, ms_task: classification}
  - {lr: 5e-4, ms_task: regression}
grid: {gamma: [0.1, 0.5]}
repeats: 2
resources: {cpus: 0.5}
prerequisites:
  stage1:
    provides: init_checkpoint
    match: [ms_task]
    config: {model: ego_rnn_ms, stage: 1}
"""


def test_grid_trials_are_exactly_the_expanded_trials(local_ray, tmp_path):
    space = write_space(tmp_path, GRID)
    paths = {run.match: f"/stage1/{run.match[0][1]}.pt" for run in space.prerequisite_runs()}
    results = fit(space, tmp_path, checkpoints={"stage1": paths})
    configs = [resolve_trial_config(r.config) for r in results]
    expected = [{**t, "init_checkpoint": f"/stage1/{t['ms_task']}.pt"} for t in space.expand()]
    assert sorted(as_flat(c) for c in configs) == sorted(
        json.dumps(t, sort_keys=True) for t in expected
    )
    assert all(r.metrics["epoch"] == 6 for r in results)


def test_asha_stops_every_trial_at_max_t_on_the_reported_epoch(local_ray, tmp_path):
    space = write_space(
        tmp_path,
        """
        fixed: {model: ego_rnn, stage: 2, epochs: 6}
        sample: {lr: {loguniform: [1e-4, 1e-2]}, milestones: {choice: [[2], [2, 4]]}}
        scheduler: {algorithm: asha, num_samples: 3, max_t: 3, grace_period: 1,
                    reduction_factor: 2, seed: 1}
        resources: {cpus: 0.5}
        """,
    )
    assert isinstance(build_scheduler(space, tmp_path), ASHAScheduler)
    results = fit(space, tmp_path)
    assert len(results) == 3
    for result in results:
        config = resolve_trial_config(result.config)
        assert 1e-4 <= config["lr"] <= 1e-2 and config["milestones"] in ([2], [2, 4])
        assert result.metrics["epoch"] <= 3


OPTUNA = """
fixed: {model: ego_rnn, stage: 2, epochs: 6}
sample:
  lr: {loguniform: [1e-5, 1e-2]}
  milestones: {choice: [[2, 4], [3, 5]]}
  frames: {randint: [4, 8]}
scheduler:
  algorithm: optuna
  num_samples: 4
  max_concurrent: 1
  seed: 3
  points_to_evaluate:
    - {lr: 1e-3, milestones: [3, 5], frames: 8}
    - {lr: 2e-4, milestones: [2, 4], frames: 4}
resources: {cpus: 0.5}
"""


def test_optuna_stores_its_study_in_sqlite_and_evaluates_the_given_points_first(
    local_ray, tmp_path
):
    import optuna

    space = write_space(tmp_path, OPTUNA, name="tpe.yaml")
    results = fit(space, tmp_path)
    database = tmp_path / "tpe" / OPTUNA_DB
    assert database.is_file() and len(results) == 4
    study = optuna.load_study(study_name="tpe", storage=f"sqlite:///{database}")
    trials = sorted(study.trials, key=lambda t: t.number)
    first = [
        {k: json.loads(v) if k == "milestones" else v for k, v in t.params.items()}
        for t in trials[:2]
    ]
    assert first == [dict(p) for p in space.scheduler.points_to_evaluate]
    for result in results:
        config = resolve_trial_config(result.config)
        assert config["milestones"] in ([2, 4], [3, 5]) and 4 <= config["frames"] <= 8


def test_metric_and_mode_go_to_the_tune_config_only_without_asha_or_optuna(tmp_path):
    grid = write_space(tmp_path, "grid: {frames: [4]}\n", name="g.yaml")
    asha = write_space(
        tmp_path,
        "sample: {lr: {uniform: [1e-4, 1e-3]}}\n"
        "scheduler: {algorithm: asha, num_samples: 2, metric: val_loss, mode: min}\n",
        name="a.yaml",
    )
    grid_config = build_tune_config(grid, tmp_path / "g")
    asha_config = build_tune_config(asha, tmp_path / "a")
    assert (grid_config.metric, grid_config.mode, grid_config.scheduler) == ("val_acc", "max", None)
    assert (asha_config.metric, asha_config.mode) == (None, None)
    assert asha_config.scheduler.metric == "val_loss"


def test_optuna_choices_of_lists_travel_as_text_and_come_back_as_lists(tmp_path):
    space = write_space(tmp_path, OPTUNA)
    domain = build_param_space(space)["milestones"]
    assert domain.categories == ["[2, 4]", "[3, 5]"]
    assert resolve_trial_config({"milestones": "[3, 5]", "alpha.ms": 0.5, "_point": 1}) == {
        "milestones": [3, 5],
        "alpha.ms": 0.5,
    }


def test_missing_optuna_fails_with_an_install_hint(tmp_path, monkeypatch):
    space = write_space(tmp_path, OPTUNA)
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(EgotuneError, match="pip install"):
        build_search_alg(space, tmp_path / "exp")


def test_missing_prerequisite_checkpoint_is_an_error():
    space = load_space("fig10_ms_classification_grid")
    with pytest.raises(EgotuneError, match="prerequisite stage1: no checkpoint"):
        build_param_space(space, checkpoints={})
