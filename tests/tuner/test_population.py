"""Population-based training (PBT, PB2): space files, exact exploits, lineage, faults."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from dataclasses import fields

import pytest
import torch
import yaml

from data_pipeline import discover
from tests.conftest import tiny_config_values
from tests.drills import kill_search_when, wait_for
from tests.tables import assert_every_row_once
from tests.tuner.test_fault_drills import trainable_pids
from tests.tuner.test_results import assert_real_png
from tuner import results
from tuner.cli import main
from tuner.spaces import SpaceError, load_space, parse_space
from tuner.training.checkpoints.files import load_checkpoint
from tuner.training.config import TrainConfig
from tuner.training.engine import TIME_FIELDS, EpochRecord, Trainer
from tuner.tune.search import SearchOptions, run_search

TINY = {k: v for k, v in tiny_config_values().items() if k not in ("stage1", "device")}
METRICS = [f.name for f in fields(EpochRecord) if f.name not in (*TIME_FIELDS, "predictions")]
EPOCHS = 4


def population_doc(algorithm: str = "pbt", epochs: int = EPOCHS, **scheduler: object) -> dict:
    return {
        "fixed": {**TINY, "model": "ego_rnn", "stage": 1, "epochs": epochs, "milestones": [4]},
        "sample": {"lr": {"loguniform": [1e-4, 3e-2]}},
        "scheduler": {
            "algorithm": algorithm,
            "num_samples": 4,
            "perturbation_interval": 2,
            "mutations": {"lr": {"loguniform": [1e-4, 3e-2]}},
            "seed": 1,
            **scheduler,
        },
        "resources": {"cpus": 1, "gpus": 0},
    }


# -- space files -----------------------------------------------------------------------------------


def test_population_settings_are_read_with_their_defaults():
    doc = population_doc()
    del doc["scheduler"]["perturbation_interval"]
    space = parse_space(doc)
    settings = space.scheduler
    assert settings.population and not settings.shares_prefixes
    assert settings.perturbation_interval == 1  # a tenth of 4 epochs, at least one
    assert (settings.quantile_fraction, settings.resample_probability) == (0.25, 0.25)
    assert space.sharing_plan() is None
    pb2 = parse_space(population_doc("pb2")).scheduler
    assert pb2.resample_probability is None and pb2.mutations is not None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mutations": {"gamma": {"uniform": [0.1, 0.5]}}}, r"mutations\.gamma: cannot be mutated"),
        ({"mutations": {"lrr": {"uniform": [0.1, 0.5]}}}, r"did you mean lr"),
        ({"quantile_fraction": 0.7}, r"quantile_fraction: must be in \(0, 0.5\]"),
        ({"mutations": None}, r"mutations: pbt needs keys to mutate"),
    ],
)
def test_a_wrong_population_setting_is_named(change, message):
    doc = population_doc()
    doc["scheduler"].update(change)
    doc["scheduler"] = {k: v for k, v in doc["scheduler"].items() if v is not None}
    with pytest.raises(SpaceError, match=message):
        parse_space(doc)


def test_pb2_models_continuous_keys_and_other_algorithms_refuse_population_settings():
    doc = population_doc("pb2", mutations={"lr": {"choice": [1e-3, 1e-2]}})
    with pytest.raises(SpaceError, match="pb2 models continuous keys"):
        parse_space(doc)
    doc = population_doc()
    doc["scheduler"]["algorithm"] = "random"
    with pytest.raises(SpaceError, match="perturbation_interval: only used by pbt and pb2"):
        parse_space(doc)


def test_the_bundled_pbt_space_extends_fig10(capsys):
    space = load_space("fig10_ms_classification_pbt")
    assert space.scheduler.algorithm == "pbt" and space.scheduler.num_samples == 8
    assert space.fixed["milestones"] == [40, 80] and "init_checkpoint" in {
        p.provides for p in space.prerequisites.values()
    }
    assert main(["spaces", "show", "fig10_ms_classification_pbt"]) == 0
    assert 'mutated lr: {"loguniform": [5e-05, 0.001]}' in capsys.readouterr().out


# -- a real population search ----------------------------------------------------------------------


@dataclasses.dataclass
class KilledPopulation:
    experiment: results.Experiment
    killed: list[int]  # the trial process killed after the first exploit
    given_up: bool  # Tune gave the killed trial up and ``--resume`` finished it


@pytest.fixture(scope="module")
def killed_pbt(module_tmp, synthetic_root, local_ray) -> KilledPopulation:
    """One real PBT search (4 trials, 4 epochs, a perturbation every 2) in which a trial's
    process is SIGKILLed once the first exploit is written: the population must finish, and
    every exploit test below reads this disturbed search."""
    experiment = module_tmp / "pbt"
    killed: list[int] = []

    def kill_a_trial_after_the_first_exploit() -> None:
        wait_for(lambda: (experiment / results.EXPLOITS_FILE).is_file())
        pid = sorted(trainable_pids() - earlier)[0]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    earlier = trainable_pids()
    killer = threading.Thread(target=kill_a_trial_after_the_first_exploit, daemon=True)
    killer.start()
    space = parse_space(population_doc(), source="pbt.yaml", name="pbt")
    options = SearchOptions(data=synthetic_root, storage=module_tmp, name="pbt", verbose=0)
    outcome = run_search(space, options)  # ends: the others never wait for the killed trial
    killer.join(timeout=10)
    given_up = bool(outcome.num_errors)
    if given_up:
        # Killed while Tune moved it to a donor's state, the trial's one death counts as two
        # failures in Ray Tune 2.60 and Tune gives it up; `--resume` brings it back.
        stopped = results.load_experiment(experiment)
        assert set(stopped.trials["status"]) <= {"TERMINATED", "ERROR"}
        assert run_search(space, dataclasses.replace(options, resume=True)).num_errors == 0
    assert_every_row_once(experiment)
    return KilledPopulation(results.load_experiment(experiment), killed, given_up)


@pytest.fixture(scope="module")
def pbt(killed_pbt: KilledPopulation) -> results.Experiment:
    return killed_pbt.experiment


@pytest.mark.slow
def test_a_trial_killed_mid_search_resumes_and_the_population_finishes(killed_pbt):
    assert killed_pbt.killed, "no trial was killed"
    done = killed_pbt.experiment
    assert set(done.trials["status"]) == {"TERMINATED"}
    assert not done.epochs.duplicated(["trial_id", "epoch"]).any()
    per_trial = done.epochs.groupby("trial_id")["epoch"].apply(sorted)
    assert all(list(run) == list(range(1, EPOCHS + 1)) for run in per_trial)
    assert set(done.exploits["epoch"]) <= {2, 4}


def test_exploits_are_recorded_and_every_trial_keeps_each_epoch_once(pbt):
    exploits = pbt.exploits
    assert len(exploits) >= 1
    assert set(exploits["epoch"]) <= {2, 4}  # perturbation epochs, never the last one
    assert (exploits["donor_id"] != exploits["trial_id"]).all()
    assert (exploits["old.lr"] != exploits["new.lr"]).any()
    epochs = pbt.epochs
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert (epochs.groupby("trial_id")["epoch"].max() == EPOCHS).all()
    assert set(pbt.trials["status"]) == {"TERMINATED"}
    # the trials table shows the values a trial ended with
    last = exploits.sort_values("generation").groupby("trial_id")["new.lr"].last()
    lrs = pbt.trials.set_index("trial_id")["lr"]
    assert all(lrs[trial] == pytest.approx(value) for trial, value in last.items())


def test_every_exploit_continues_from_a_state_the_donor_wrote_at_that_epoch(pbt):
    store = pbt.path / "checkpoints"
    epochs = pbt.epochs.set_index(["trial_id", "epoch"])
    for row in pbt.exploits.itertuples():
        pinned = store / row.trial_id / f"from-{row.donor_id}-state-e{int(row.epoch):05d}.pt"
        assert pinned.is_file(), pinned
        assert epochs.loc[(row.donor_id, int(row.epoch)), "checkpoint_bytes"] > 0


def test_an_exploited_trial_applies_its_new_values_exactly(pbt, synthetic_root):
    row = pbt.exploits.sort_values("epoch").iloc[0]
    epoch = int(row["epoch"])
    state = load_checkpoint(
        pbt.path / "checkpoints" / row["trial_id"] / f"from-{row['donor_id']}-state-e{epoch:05d}.pt"
    )
    best_file = state.get("best_file")
    donor_folder = pbt.path / "checkpoints" / row["trial_id"]
    best = load_checkpoint(donor_folder / f"from-{row['donor_id']}-{best_file}")["model"]
    doc = population_doc()
    values = {**doc["fixed"], "lr": float(row["new.lr"])}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a one-CPU trial
    try:
        trainer = Trainer(TrainConfig.from_dict(values), discover(synthetic_root))
        trainer.continue_from(state, best, differing=("lr",))
        record = next(trainer.run())
    finally:
        torch.set_num_threads(threads)
    recorded = pbt.epochs.set_index(["trial_id", "epoch"]).loc[(row["trial_id"], epoch + 1)]
    assert record.epoch == epoch + 1
    assert record.lr == pytest.approx(float(row["new.lr"]))  # before the milestone at 4
    for name in ("train_loss", "val_loss", "val_acc", "lr"):
        assert recorded[name] == pytest.approx(getattr(record, name), rel=1e-6), name


def test_curves_draw_the_lineage_of_an_exploited_trial(pbt, tmp_path, capsys):
    trial = str(pbt.exploits.iloc[0]["trial_id"])
    out = tmp_path / "lineage.png"
    assert main(["results", "curves", str(pbt.path), "--trials", trial, "--out", str(out)]) == 0
    assert_real_png(out, (800, 300))


def test_trials_paused_at_a_perturbation_point_continue_when_the_one_behind_ended(tmp_path):
    """Tune gave up on a trial short of the point (an error past its retries): the trials
    waiting there for it continue instead of staying paused for ever."""
    from dataclasses import dataclass
    from types import SimpleNamespace

    from ray.tune.experiment import Trial

    @dataclass(eq=False)  # hashed by identity, as Tune's trials are
    class Stub:
        status: str
        trial_id: str

    from tuner.tune.schedulers.pbt import build_population_scheduler

    scheduler = build_population_scheduler(parse_space(population_doc()), tmp_path)
    scheduler._next_perturbation_sync = 4
    paused = [Stub(Trial.PAUSED, f"p{i}") for i in range(3)]
    behind = Stub(Trial.RUNNING, "b")
    for trial, reached in [*((t, 4) for t in paused), (behind, 2)]:
        scheduler._trial_state[trial] = SimpleNamespace(last_train_time=reached)

    def controller(*trials):
        # as Tune's: a trial it gave up on (ERROR) stays among the "live" ones
        live = [t for t in trials if t.status != Trial.TERMINATED]
        return SimpleNamespace(get_trials=lambda: list(trials), get_live_trials=lambda: live)

    assert scheduler.choose_trial_to_run(controller(*paused, behind)) is None  # it may still come
    assert scheduler._next_perturbation_sync == 4
    behind.status = Trial.ERROR
    assert scheduler.choose_trial_to_run(controller(*paused, behind)) in paused
    assert scheduler._next_perturbation_sync == 6  # the next point perturbs as usual


def test_an_exploit_stands_once_its_trial_went_on_from_it():
    """A driver killed after the scheduler wrote an exploit but before Tune saved it: on
    ``--resume`` the trial went on from its own state and was exploited again at that epoch."""
    import pandas as pd

    exploits = pd.DataFrame(
        {
            "trial_id": ["a", "a", "b"],
            "donor_id": ["c", "c", "c"],
            "epoch": [2, 2, 4],
            "generation": [1, 1, 1],
            "exploit_id": ["lost", "kept", "pending"],
        }
    )
    epochs = pd.DataFrame(
        {
            "trial_id": ["a", "a", "b", "b"],
            "epoch": [2, 3, 4, 5],
            "exploit_id": [None, "kept", None, None],
        }
    )
    assert results.confirmed_exploits(exploits, epochs)["exploit_id"].tolist() == ["kept"]
    older = exploits.drop(columns="exploit_id")  # tables from before exploits had ids
    assert results.confirmed_exploits(older, epochs).equals(older)


def test_no_exploit_from_a_trial_without_a_state_on_disk(tmp_path, capsys):
    """Ray #27170: PBT exploiting a trial that never checkpointed. Without a checkpoint, or with
    one whose state file is gone, the trial keeps its own state and nothing is recorded."""
    import json
    from types import SimpleNamespace

    from tuner.tune.schedulers.pbt import build_population_scheduler

    scheduler = build_population_scheduler(parse_space(population_doc()), tmp_path)
    config = {**population_doc()["fixed"], "lr": 1e-3}
    changed: list[dict] = []

    class Stub(SimpleNamespace):
        __hash__ = object.__hash__  # hashed by identity, as Tune's trials are

    trial = Stub(trial_id="low", config=config, set_config=changed.append)
    gone = tmp_path / "gone"
    gone.mkdir()
    (gone / "pointer.json").write_text(json.dumps({"state": "state-e00002.pt", "epoch": 2}))
    import pyarrow.fs as pafs

    on_disk = SimpleNamespace(path=str(gone), filesystem=pafs.LocalFileSystem())
    for checkpoint in (None, on_disk):
        donor = Stub(trial_id="high", config=config)
        scheduler._trial_state[trial] = SimpleNamespace(last_result={"epoch": 2})
        scheduler._trial_state[donor] = SimpleNamespace(last_checkpoint=checkpoint)
        scheduler._exploit(None, trial, donor)
        said = capsys.readouterr().out
        assert "trial low keeps its own state: trial high has no checkpoint" in said
    assert changed == [] and not (tmp_path / results.EXPLOITS_FILE).exists()
    assert not (tmp_path / "checkpoints" / "low").exists()  # nothing pinned


# -- faults ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_killed_driver_resumes_a_pb2_population_search(
    synthetic_root, tmp_path, local_ray_address
):
    """PB2 (Ray's PBT with a GP-chosen explore) on a running cluster: two trials, the lower one
    exploits the other at epoch 2; the driver is killed once that exploit is written (the
    cluster removes its trials) and a resume finishes, here from a library caller's process
    (``run_search`` with ``resume``; the ASHA and sharing drills resume with the command)."""
    doc = population_doc("pb2", epochs=4, num_samples=2)
    space = tmp_path / "pb2driver.yaml"
    space.write_text(yaml.safe_dump(doc))
    storage = tmp_path / "results"
    experiment = storage / "pb2driver"
    kill_search_when(
        space,
        synthetic_root,
        storage,
        "pb2driver",
        lambda: (experiment / results.EXPLOITS_FILE).is_file(),
        address=local_ray_address,
    )
    options = SearchOptions(
        data=synthetic_root, storage=storage, name="pb2driver", verbose=0, resume=True
    )
    resumed = run_search(parse_space(doc, source=str(space), name="pb2driver"), options)
    assert resumed.num_errors == 0
    assert_every_row_once(experiment, trials=2)
    done = results.load_experiment(experiment)
    assert len(done.trials) == 2 and set(done.trials["status"]) == {"TERMINATED"}
    epochs = done.epochs
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    per_trial = epochs.groupby("trial_id")["epoch"].apply(sorted)
    assert all(list(run) == [1, 2, 3, 4] for run in per_trial)
    assert len(done.exploits) >= 1
    # on the population's schedule after the resume (Ray's PBT and PB2 would restart their
    # clock at 0 and perturb again at epoch 3), and each exploit one that a trial went on from
    assert set(done.exploits["epoch"]) == {2}
    assert set(done.exploits["exploit_id"]) <= set(epochs["exploit_id"].dropna())


def test_a_trial_added_again_keeps_its_place_on_the_population_clock(tmp_path):
    """Tune adds a trial again when it retries it or ``--resume`` restores it: one that reported
    epoch 3, with a perturbation every 2, last perturbed at 2 and perturbs next at 4 (Ray's PBT and
    PB2 would restart its clock at 0). The PB2 scheduler bounds the keys it mutates."""
    from types import SimpleNamespace

    from ray.tune.schedulers.pb2 import PB2

    from tuner.tune.schedulers.pbt import build_population_scheduler

    scheduler = build_population_scheduler(parse_space(population_doc("pb2")), tmp_path)
    assert isinstance(scheduler, PB2)
    assert scheduler._hyperparam_bounds == {"lr": [1e-4, 3e-2]}

    class Stub(SimpleNamespace):
        __hash__ = object.__hash__  # hashed by identity, as Tune's trials are

    checkpoint = SimpleNamespace(path=str(tmp_path))
    metadata = SimpleNamespace(
        last_result={"epoch": 3, "val_acc": 40.0},
        checkpoint_manager=SimpleNamespace(checkpoint_config=SimpleNamespace(num_to_keep=None)),
    )
    trial = Stub(
        trial_id="back",
        config={"lr": 1e-3},
        evaluated_params={"lr": 1e-3},
        experiment_tag="1_lr=0.001",
        run_metadata=metadata,
        checkpoint=checkpoint,
    )
    scheduler.on_trial_add(SimpleNamespace(search_alg=None), trial)
    state = scheduler._trial_state[trial]
    assert (state.last_train_time, state.last_perturbation_time) == (3, 2)
    assert state.last_score == 40.0 and state.last_checkpoint is checkpoint
    assert scheduler._next_perturbation_sync == 4
