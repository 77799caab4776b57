"""Real small searches on a local Ray: grid with a prerequisite, ASHA, Optuna; Parquet read back."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import tiny_config_values
from tests.fork_log import forks_of_ray_workers
from tests.tables import assert_every_row_once
from tuner.errors import EgotuneError
from tuner.spaces import parse_space
from tuner.training.checkpoints.files import load_checkpoint
from tuner.tune.search import PREREQUISITES_DIR, SearchOptions, SearchOutcome, run_search

TINY_FIXED = {
    key: value
    for key, value in tiny_config_values().items()
    if key not in ("epochs", "stage1", "device")
}


def space(doc: dict, name: str = "tiny"):
    return parse_space(doc, source=f"{name}.yaml", name=name)


def grid_doc(epochs: int = 2) -> dict:
    return {
        "fixed": {**TINY_FIXED, "model": "ego_rnn", "stage": 2, "epochs": epochs},
        "grid": {"lr": [1e-3, 1e-4]},
        "scheduler": {"algorithm": "grid"},
        "resources": {"cpus": 1, "gpus": 0},
        "prerequisites": {
            "stage1": {
                "provides": "init_checkpoint",
                "config": {"model": "ego_rnn", "stage": 1, "epochs": 1},
            }
        },
    }


def options(root: Path, storage: Path, name: str) -> SearchOptions:
    return SearchOptions(data=root, storage=storage, name=name, verbose=0, argv=["test"])


def read_tables(experiment: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(experiment / "trials.parquet"), pd.read_parquet(
        experiment / "epochs.parquet"
    )


@dataclass
class Searched:
    storage: Path
    outcome: SearchOutcome
    console: str
    forks: list[str] = field(default_factory=list)
    """Parent pid of each process a Ray worker forked during the search."""


@pytest.fixture(scope="module")
def grid(module_tmp, local_ray, synthetic_root) -> Searched:
    """A stage-2 grid after its stage-1 prerequisite, checkpointing every 2 of 3 epochs, run
    with Tune's console on (``verbose=1``), one loader worker per trial."""
    doc = grid_doc(epochs=3)
    doc["fixed"]["checkpoint_every"] = 2
    doc["fixed"]["num_workers"] = 1
    run = SearchOptions(data=synthetic_root, storage=module_tmp, name="grid", verbose=1, argv=[])
    console = io.StringIO()
    with (
        contextlib.redirect_stdout(console),
        contextlib.redirect_stderr(console),
        forks_of_ray_workers() as forks,
    ):
        outcome = run_search(space(doc), run)
    return Searched(module_tmp, outcome, console.getvalue(), forks)


def test_grid_search_with_a_prerequisite_writes_matching_tables(grid):
    outcome = grid.outcome
    assert outcome.num_errors == 0
    assert_every_row_once(outcome.experiment_dir, trials=2)
    trials, epochs = read_tables(outcome.experiment_dir)
    assert sorted(trials["lr"]) == [1e-4, 1e-3]
    assert set(trials["status"]) == {"TERMINATED"}
    assert trials["trial_id"].is_unique
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert epochs.groupby("trial_id")["epoch"].apply(sorted).tolist() == [[1, 2, 3], [1, 2, 3]]
    for _, trial in trials.iterrows():
        run = epochs[epochs["trial_id"] == trial["trial_id"]]
        assert trial["best_val_acc"] == pytest.approx(run["val_acc"].max())
        assert Path(trial["checkpoint"]).exists()
    assert len(set(trials["init_checkpoint"])) == 1  # every trial starts from the same stage-1 run
    metadata = json.loads((outcome.experiment_dir / "experiment.json").read_text())
    assert metadata["space"]["name"] == "tiny"
    assert metadata["dataset_fingerprint"]


def test_each_run_forks_its_loader_processes_once_not_per_epoch(grid):
    """The prerequisite (1 epoch and its BatchNorm pass) and two trials of 3 epochs: one
    training and one validation worker each, however many epochs (the validation batches stay
    in memory after the first pass)."""
    trials, epochs = read_tables(grid.outcome.experiment_dir)
    assert len(trials) == 2 and len(epochs) == 6
    assert len(grid.forks) == 2 * 3


def test_epoch_rows_carry_where_the_time_went_and_checkpoints_are_periodic(grid):
    from tuner.results import read_epochs, read_trials

    # no forced experiment snapshot per checkpoint, so Tune never warns about them
    assert "Number of trials: 2/2 (2 TERMINATED)" in grid.console  # the console was captured
    assert "snapshotting has been triggered" not in grid.console
    epochs = read_epochs(grid.outcome.experiment_dir)
    for column in ("train_s", "data_wait_s", "val_s", "checkpoint_s", "report_s"):
        assert (epochs[column] >= 0).all(), column
    first = epochs["epoch"] == 1
    assert (epochs.loc[first, "startup_s"] > 0).all() and epochs.loc[
        ~first, "startup_s"
    ].isna().all()
    persisted = epochs.groupby("epoch")["checkpoint_bytes"].min()
    assert persisted[1] == 0 and persisted[2] > 0 and persisted[3] > 0  # every 2, and the end
    for _, trial in read_trials(grid.outcome.experiment_dir).iterrows():
        best = load_checkpoint(trial["checkpoint"])  # complete weights of the best epoch
        assert Path(trial["checkpoint"]).name == "best.pt" and "optimizer" not in best
        assert best["epoch"] == trial["best_epoch"]
        assert any(key.startswith("backbone.layer1.") for key in best["model"])


def test_prerequisite_runs_once_and_a_later_search_reuses_it(grid, synthetic_root):
    (record,) = list((grid.storage / PREREQUISITES_DIR).glob("*/prerequisite.json"))
    before = record.stat().st_mtime_ns
    second = run_search(space(grid_doc(epochs=1)), options(synthetic_root, grid.storage, "second"))
    assert len(list((grid.storage / PREREQUISITES_DIR).glob("*/prerequisite.json"))) == 1
    assert record.stat().st_mtime_ns == before
    assert_every_row_once(second.experiment_dir)
    trials, _ = read_tables(second.experiment_dir)
    handed_on = json.loads(record.read_text())["checkpoint"]
    assert set(trials["init_checkpoint"]) == {handed_on}
    # the engine's best weights (first best epoch), not whichever checkpoint Tune kept
    assert Path(handed_on).name == "best.pt" and Path(handed_on).is_relative_to(record.parent)
    best = load_checkpoint(handed_on)
    assert (best["stage"], best["epoch"]) == (1, 1) and "optimizer" not in best


def test_an_asha_search_writes_one_row_per_trial_that_ran(local_ray, synthetic_root, tmp_path):
    """(An Optuna search: ``test_optuna_storage.py``.)"""
    doc = {
        "fixed": {**TINY_FIXED, "model": "ego_rnn", "stage": 1, "epochs": 2},
        "sample": {"lr": {"loguniform": [1e-4, 1e-2]}},
        "scheduler": {"algorithm": "asha", "num_samples": 3, "seed": 0},
        "resources": {"cpus": 1, "gpus": 0},
    }
    doc["scheduler"].update(grace_period=1, reduction_factor=2, max_t=2)
    outcome = run_search(space(doc), options(synthetic_root, tmp_path, "asha"))
    assert_one_row_per_trial_that_ran(outcome.experiment_dir, trials=3)


def assert_one_row_per_trial_that_ran(experiment: Path, trials: int) -> None:
    assert_every_row_once(experiment, trials=trials)
    table, epochs = read_tables(experiment)
    assert set(epochs["trial_id"]) == set(table["trial_id"])


def test_an_existing_experiment_is_never_overwritten(local_ray, synthetic_root, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("results")
    with pytest.raises(EgotuneError, match=r"--name taken.*already exists"):
        run_search(space(grid_doc()), options(synthetic_root, tmp_path, "taken"))
    assert (tmp_path / "taken" / "keep.txt").read_text() == "results"


def test_a_request_no_node_can_satisfy_fails_before_any_trial(local_ray, synthetic_root, tmp_path):
    doc = grid_doc()
    doc["resources"] = {"cpus": 1, "gpus": 4}
    with pytest.raises(EgotuneError, match=r"resources\.gpus: 4 in .*--gpus-per-trial 0 to"):
        run_search(space(doc), options(synthetic_root, tmp_path, "greedy"))
    assert not (tmp_path / "greedy").exists()


def test_a_request_an_autoscaled_node_type_fits_is_accepted(local_ray, monkeypatch):
    """``min_workers: 0`` GPU types have no node yet; their shape counts all the same."""
    from ray._private.state import state
    from ray.core.generated import autoscaler_pb2

    from tuner.tune.preflight import ResourceRequest, check_cluster_resources
    from tuner.tune.session import node_shapes

    def check(gpus: float) -> None:
        requests = [ResourceRequest("cpus", 1, "--cpus-per-trial 1")]
        requests.append(ResourceRequest("gpus", gpus, f"--gpus-per-trial {gpus:g}"))
        check_cluster_resources(requests, node_shapes())

    with pytest.raises(EgotuneError, match=r"--gpus-per-trial 0\.5 \(lower it: 0 to train"):
        check(0.5)
    config = autoscaler_pb2.ClusterConfig(
        node_group_configs=[
            autoscaler_pb2.NodeGroupConfig(resources={"CPU": 8, "GPU": 1}, max_count=4)
        ]
    )
    monkeypatch.setattr(state, "get_cluster_config", lambda: config)
    check(0.5)
    with pytest.raises(EgotuneError, match=r"--gpus-per-trial 2 \(lower it: 1 or less\)"):
        check(2)


def test_requests_each_node_gives_alone_but_none_together_are_named_together():
    from tuner.tune.preflight import ResourceRequest, check_cluster_resources

    requests = [
        ResourceRequest("cpus", 4, "resources.cpus: 4 in fig10.yaml"),
        ResourceRequest("gpus", 1, "--gpus-per-trial 1"),
    ]
    shapes = [{"CPU": 8.0}, {"CPU": 2.0, "GPU": 1.0}]
    with pytest.raises(EgotuneError) as raised:
        check_cluster_resources(requests, shapes)
    assert str(raised.value) == (
        "per-trial resources no single node of the cluster has together (largest node: 8 CPUs, "
        "1 GPUs): resources.cpus: 4 in fig10.yaml with --gpus-per-trial 1; lower one of them or "
        "add a node that has both"
    )
    check_cluster_resources(requests, [*shapes, {"CPU": 4.0, "GPU": 1.0}])


def test_a_bucket_uri_as_storage_is_refused(synthetic_root):
    with pytest.raises(EgotuneError, match=r"--storage s3:/bucket/x: .*folder every node sees"):
        run_search(space(grid_doc()), options(synthetic_root, Path("s3://bucket/x"), "uri"))
    assert not Path("s3:").exists()


# -- reused workers --------------------------------------------------------------------------------


def _slow_to_end(config: dict) -> None:
    """Two epochs, then a thread that takes longer to end than Tune waits by default (2 s),
    as a trial stopped by ASHA releasing its memory on a busy node."""
    import time

    from ray import tune

    try:
        for epoch in (1, 2):
            tune.report({"epoch": epoch})
    finally:
        time.sleep(2.5)


def test_a_reused_worker_waits_for_the_stopped_trial_before_the_next(local_ray, tmp_path):
    from ray import tune

    from tuner.tune.trainable import TrialActorName

    _slow_to_end.__mixins__ = (TrialActorName,)  # type: ignore[attr-defined]
    tuner = tune.Tuner(
        tune.with_resources(_slow_to_end, {"cpu": 2}),  # one trial at a time: the worker is reused
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(
            name="reuse", storage_path=str(tmp_path), stop={"epoch": 1}, verbose=0
        ),
    )
    results = tuner.fit()
    assert results.num_errors == 0, [str(error)[-500:] for error in results.errors]
    assert [result.metrics["epoch"] for result in results] == [1, 1]


def test_a_trial_collects_only_what_it_created():
    """A trial leaves what its worker held when it started (the imports of torch, torchvision
    and Ray) out of the collection at its end; the cycles it makes itself are still collected."""
    import gc
    import weakref

    from tuner.tune import trainable

    class Node:
        pass

    try:
        held = len(gc.get_objects())
        trainable._collect_from_here()
        assert gc.get_freeze_count() >= held
        assert len(gc.get_objects()) < held / 100
        node = Node()
        node.me = node  # type: ignore[attr-defined]
        alive = weakref.ref(node)
        del node
        gc.collect()
        assert alive() is None
    finally:
        gc.unfreeze()
