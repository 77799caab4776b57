"""Prefix sharing: the plan, the engine continuing another configuration's state, real searches."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from data_pipeline import discover
from tests.conftest import tiny_config_values
from tests.drills import kill_search_when, resume_search
from tests.tables import assert_every_row_once
from tuner import results
from tuner.cli import main
from tuner.spaces import Branch, SpaceError, load_space, parse_space, plan_sharing
from tuner.training.checkpoints.files import CheckpointError
from tuner.training.config import TrainConfig
from tuner.training.engine import TIME_FIELDS, EpochRecord, Trainer
from tuner.tune.search import SearchOptions, run_search

TINY = {k: v for k, v in tiny_config_values().items() if k not in ("stage1", "device")}
METRICS = [f.name for f in fields(EpochRecord) if f.name not in (*TIME_FIELDS, "predictions")]
HYPERPARAMETERS = ["lr", "milestones", "gamma"]


def config(**values: object) -> TrainConfig:
    return TrainConfig.from_dict({"model": "ego_rnn", "stage": "1", **values})


# -- the plan ------------------------------------------------------------------------------------


def test_the_report_grids_share_every_epoch_before_a_setting_acts():
    fig10 = load_space("fig10_ms_classification_grid").sharing_plan()
    assert fig10 is not None
    assert (fig10.trial_epochs, fig10.shared_trial_epochs) == (3600, 2360)
    # per (lr, weight_decay): epochs 1-30 once; [40, 80] and [50, 100] also share 31-40
    assert fig10.branches[:9] == (
        None,
        Branch(0, 30), Branch(0, 30), Branch(0, 30),
        Branch(3, 40), Branch(3, 40), Branch(3, 40),
        Branch(6, 50), Branch(6, 50),
    )  # fmt: skip
    assert fig10.save_at(0) == (30,) and fig10.save_at(3) == (40,) and fig10.save_at(1) == ()
    assert fig10.sources(7) == [(6, 50), (3, 40), (0, 30)]
    fig11 = load_space("fig11_ms_regression_grid").sharing_plan()
    assert fig11 is not None
    assert (fig11.trial_epochs, fig11.shared_trial_epochs) == (3000, 2200)


def test_a_setting_acts_from_the_epoch_it_changes_the_learning_rate():
    def branch(a: TrainConfig, b: TrainConfig) -> Branch | None:
        return plan_sharing([a, b]).branches[1]

    base = {"epochs": 10, "milestones": [4, 8], "gamma": 0.1}
    assert branch(config(**base), config(**{**base, "gamma": 0.5})) == Branch(0, 4)
    assert branch(config(**base), config(**{**base, "milestones": [4, 9]})) == Branch(0, 8)
    assert branch(config(**base), config(**{**base, "epochs": 6})) == Branch(0, 6)
    assert branch(config(**{**base, "epochs": 6}), config(**base)) == Branch(0, 6)
    for other in ({"lr": 1e-2}, {"weight_decay": 0.1}, {"seed": 1}, {"frames": 5}):
        assert branch(config(**base), config(**{**base, **other})) is None, other
    assert branch(config(**base), config(**{**base, "num_workers": 7})) == Branch(0, 10)
    # the two-stream model decays every epoch (StepLR(1, gamma)): gamma acts from epoch 2
    two_stream = {"model": "two_stream", "epochs": 5, "gamma": 0.99}
    assert branch(config(**two_stream), config(**{**two_stream, "gamma": 0.9})) == Branch(0, 1)
    # stage: both: the stage-1 settings act in stage 1 only, the stage-2 ones after it
    both = {"stage": "both", "stage1": {"epochs": 3}, "epochs": 4, "lr": 1e-4}
    assert branch(config(**both), config(**{**both, "lr": 1e-3})) == Branch(0, 3)
    longer = {**both, "stage1": {"epochs": 5}}
    assert branch(config(**both), config(**longer)) == Branch(0, 3)


def test_trials_of_other_prerequisite_runs_never_share():
    configs = [config(epochs=4, gamma=g, milestones=[2]) for g in (0.1, 0.5)]
    assert plan_sharing(configs, groups=["a", "a"]).shares
    assert not plan_sharing(configs, groups=["a", "b"]).shares


def test_share_prefixes_false_turns_sharing_off_and_a_wrong_value_is_named():
    doc = {
        "fixed": {"model": "ego_rnn", "stage": 1, "epochs": 4, "milestones": [2]},
        "grid": {"gamma": [0.1, 0.5]},
    }
    assert parse_space(doc).sharing_plan() is not None
    assert parse_space({**doc, "share_prefixes": False}).sharing_plan() is None
    with pytest.raises(SpaceError, match="share_prefixes: expected true or false"):
        parse_space({**doc, "share_prefixes": "no"})


def test_spaces_show_prints_the_plan(capsys):
    assert main(["spaces", "show", "fig10_ms_classification_grid"]) == 0
    out = capsys.readouterr().out
    assert "3,600 trial-epochs without prefix sharing, 2,360 with it" in out
    assert "    2  lr=0.0001 weight_decay=0.004 milestones=[30, 70] gamma=0.2  [continues #1" in out
    assert main(["spaces", "show", "fig10_ms_classification_grid", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["sharing"]
    assert (plan["trial_epochs"], plan["shared_trial_epochs"]) == (3600, 2360)


# -- the engine ----------------------------------------------------------------------------------


def records(trainer: Trainer) -> pd.DataFrame:
    frame = pd.DataFrame([r.to_dict() for r in trainer.run()])
    return frame[[c for c in METRICS if c in frame.columns]]


def test_a_branch_continues_exactly_as_its_own_run(synthetic_root):
    index = discover(synthetic_root)
    values = {**TINY, "model": "ego_rnn", "stage": 1, "epochs": 4, "milestones": [2]}
    parent = Trainer(TrainConfig.from_dict({**values, "gamma": 0.1}), index)
    list(parent.run(max_epochs=2))
    state = parent.state_dict()
    branch = Trainer(TrainConfig.from_dict({**values, "gamma": 0.5}), index)
    branch.continue_from(state)
    continued = records(branch)
    alone = records(Trainer(TrainConfig.from_dict({**values, "gamma": 0.5}), index))
    assert list(continued["epoch"]) == [3, 4]
    pd.testing.assert_frame_equal(continued, alone.iloc[2:].reset_index(drop=True))
    assert continued["lr"].iloc[0] == pytest.approx(values_lr(values) * 0.5)


def test_a_branch_whose_source_ended_early_continues_from_its_last_state(synthetic_root, tmp_path):
    """ASHA stopped the source before its branch epoch: its newest resume state up to that
    epoch (best weights kept apart) still holds epochs the branch shares, and the rows of all
    of them, the state's own epoch included (the branch reports them: its table holds every
    epoch once, and ASHA judges it at every rung)."""
    from tuner.training.checkpoints.policy import CheckpointPolicy
    from tuner.training.checkpoints.writer import CheckpointFolder, RunCheckpoints
    from tuner.tune.sharing.trial import ENDED_FILE, TrialSharing
    from tuner.tune.trainable import _branch, _Run

    index = discover(synthetic_root)
    values = {**TINY, "model": "ego_rnn", "stage": 1, "epochs": 4, "milestones": [3]}
    source = Trainer(TrainConfig.from_dict({**values, "gamma": 0.1}), index)
    written = RunCheckpoints(source, CheckpointFolder(tmp_path / "src"), CheckpointPolicy(1))
    loop = _Run(source, written, "src", tags={}, save_at=set())
    loop.exploit_every = 1  # every state complete on disk when the epoch is kept
    for record in source.run(max_epochs=2):  # the trial's own bookkeeping, without Tune
        loop.keep(record, {})
    written.close(wait=True)
    sharing = TrialSharing(sources=(("src", 3),))
    branch = Trainer(TrainConfig.from_dict({**values, "gamma": 0.5}), index)
    mine = RunCheckpoints(branch, CheckpointFolder(tmp_path / "mine"), CheckpointPolicy(1))
    assert _branch(branch, mine, sharing) == []  # the source has not ended yet
    (tmp_path / "src" / ENDED_FILE).write_text("{}")
    rows = _branch(branch, mine, sharing)
    assert [(row["epoch"], row["computed_by"]) for row in rows] == [(1, "src"), (2, "src")]
    assert branch.best["epoch"] in (1, 2) and branch.best_model is not None
    alone = records(Trainer(TrainConfig.from_dict({**values, "gamma": 0.5}), index))
    pd.testing.assert_frame_equal(records(branch), alone.iloc[2:].reset_index(drop=True))


def values_lr(values: dict) -> float:
    return TrainConfig.from_dict(values).stage_settings(1).lr or 0.0


def test_a_branch_refuses_a_state_that_differs_in_what_acts_from_the_start(synthetic_root):
    index = discover(synthetic_root)
    values = {**TINY, "model": "ego_rnn", "stage": 1, "epochs": 2}
    state = Trainer(TrainConfig.from_dict(values), index).state_dict()
    other = Trainer(TrainConfig.from_dict({**values, "seed": 4}), index)
    with pytest.raises(CheckpointError, match=r"other settings \(seed\)"):
        other.continue_from(state)


# -- real searches ---------------------------------------------------------------------------------


def grid_doc(share: bool, epochs: int = 5) -> dict:
    """Four trials: one prefix, two milestone branches, and two gamma branches on each (a key
    that acts from the first epoch, such as ``lr``, starts trees that share nothing: see the
    plan's tests)."""
    return {
        "fixed": {**TINY, "model": "ego_rnn", "stage": 1, "epochs": epochs},
        "grid": {"lr": [1e-2], "milestones": [[2], [3]], "gamma": [0.1, 0.5]},
        "scheduler": {"algorithm": "grid", "max_concurrent": 2},
        "resources": {"cpus": 1, "gpus": 0},
        "share_prefixes": share,
    }


def by_configuration(experiment: results.Experiment, frame: pd.DataFrame) -> pd.DataFrame:
    keys = experiment.trials[["trial_id", *HYPERPARAMETERS]].copy()
    keys["milestones"] = keys["milestones"].map(str)
    keys.columns = ["trial_id", *(f"config.{k}" for k in HYPERPARAMETERS)]
    merged = frame.merge(keys, on="trial_id").drop(columns="trial_id")
    index = [f"config.{k}" for k in HYPERPARAMETERS] + [c for c in ("epoch", "video") if c in frame]
    return merged.set_index(index).sort_index()


@pytest.fixture(scope="module")
def searches(module_tmp, synthetic_root, local_ray) -> dict[bool, results.Experiment]:
    storage = module_tmp
    done = {}
    for share in (True, False):
        name = f"share-{str(share).lower()}"
        space = parse_space(grid_doc(share), source=f"{name}.yaml", name=name)
        options = SearchOptions(data=synthetic_root, storage=storage, name=name, verbose=0)
        outcome = run_search(space, options)
        assert outcome.num_errors == 0
        assert_every_row_once(outcome.experiment_dir)
        done[share] = results.load_experiment(outcome.experiment_dir)
    return done


def test_every_epoch_with_sharing_equals_the_same_grid_without(searches):
    shared, alone = searches[True], searches[False]
    assert len(shared.epochs) == len(alone.epochs) == 4 * 5
    columns = [c for c in METRICS if c != "epoch" and c in shared.epochs.columns]
    pd.testing.assert_frame_equal(
        by_configuration(shared, shared.epochs)[columns],
        by_configuration(alone, alone.epochs)[columns],
        check_exact=True,
    )
    summary = ["best_val_acc", "best_epoch", "epochs_run"]
    pd.testing.assert_frame_equal(
        by_configuration(shared, shared.trials)[summary],
        by_configuration(alone, alone.trials)[summary],
    )
    predictions = ["pred_class", "p_true", "correct"]
    pd.testing.assert_frame_equal(
        by_configuration(shared, shared.predictions)[predictions],
        by_configuration(alone, alone.predictions)[predictions],
        check_exact=True,
    )


def test_the_epochs_run_are_the_plan_and_shared_rows_name_where_they_come_from(searches):
    shared, alone = searches[True], searches[False]
    plan = parse_space(grid_doc(True)).sharing_plan()
    assert plan is not None and plan.shared_trial_epochs < plan.trial_epochs
    epochs = shared.epochs
    own = epochs["computed_by"] == epochs["trial_id"]
    assert int(own.sum()) == plan.shared_trial_epochs == 13
    assert (alone.epochs["computed_by"] == alone.epochs["trial_id"]).all()
    # a shared row is the very row its source trial computed, and stored once in the
    # predictions table (each sharing trial reads the source's)
    rows = epochs.set_index(["trial_id", "epoch"])
    for (_, epoch), row in rows[~own.to_numpy()].iterrows():
        source = rows.loc[(row["computed_by"], epoch)]
        assert source["computed_by"] == row["computed_by"] and source["val_acc"] == row["val_acc"]
    stored = results.read_predictions(shared.path)
    assert len(stored) == int(own.sum()) * stored["video"].nunique()
    assert len(shared.predictions) == len(epochs) * stored["video"].nunique()


# -- a killed driver -------------------------------------------------------------------------------


def undisturbed(root: Path, values: dict) -> pd.DataFrame:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a one-CPU trial
    try:
        return records(Trainer(TrainConfig.from_dict(values), discover(root)))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_a_killed_driver_resumes_a_sharing_grid_to_the_same_curves(
    synthetic_root, tmp_path, local_ray_address
):
    """On a running cluster: the driver is killed once a branch state is written."""
    doc = grid_doc(True, epochs=4)
    doc["fixed"]["checkpoint_every"] = 2
    space = tmp_path / "sharekill.yaml"
    space.write_text(yaml.safe_dump(doc))
    storage = tmp_path / "results"
    store = storage / "sharekill" / "checkpoints"
    kill_search_when(
        space,
        synthetic_root,
        storage,
        "sharekill",
        lambda: len(list(store.glob("*/branch-e*.pt"))) >= 1,
        address=local_ray_address,
    )
    resume_search(storage, "sharekill", address=local_ray_address)
    experiment = results.load_experiment(storage / "sharekill")
    assert len(experiment.trials) == 4 and set(experiment.trials["status"]) == {"TERMINATED"}
    epochs = experiment.epochs
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    per_trial = epochs.groupby("trial_id")["epoch"].apply(sorted)
    assert all(list(run) == [1, 2, 3, 4] for run in per_trial)
    trials = experiment.trials.set_index("trial_id")
    for trial_id in (trials.index[0], trials.index[-1]):
        values = {**doc["fixed"], **trials.loc[trial_id, HYPERPARAMETERS].to_dict()}
        milestones = values["milestones"]  # the trials table holds lists as JSON text
        values["milestones"] = json.loads(milestones) if isinstance(milestones, str) else milestones
        values["milestones"] = list(values["milestones"])
        expected = undisturbed(synthetic_root, values)
        got = epochs[epochs["trial_id"] == trial_id].sort_values("epoch")[list(expected.columns)]
        pd.testing.assert_frame_equal(got.reset_index(drop=True), expected, check_dtype=False)


# -- replay --------------------------------------------------------------------------------------


def test_replay_tells_what_sharing_would_have_saved_on_a_finished_grid(capsys):
    fixture = Path(__file__).resolve().parents[2] / "bench" / "fixtures"
    assert main(["replay", str(fixture / "fig10-synthetic"), "--json"]) == 0
    sharing = json.loads(capsys.readouterr().out)["sharing"]
    plan = load_space(str(fixture / "fig10_synthetic.yaml")).sharing_plan()
    assert plan is not None
    assert sharing["trials"] == len(plan.epochs) and sharing["trial_epochs"] == plan.trial_epochs
    assert sharing["with_sharing"] == plan.shared_trial_epochs < plan.trial_epochs
    assert 0 < sharing["seconds_saved"] < sharing["recorded_seconds"]
    assert main(["replay", str(fixture / "fig10-synthetic")]) == 0
    assert f"with sharing {plan.shared_trial_epochs:,}" in capsys.readouterr().out
