"""Fault drills on real Ray: a trial killed mid-epoch, a killed driver resumed, a lost node.

In each drill the search must finish and the Parquet tables must hold every epoch of every trial
exactly once; for the killed trial, its metrics must equal an undisturbed run's (times aside).
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pandas as pd
import pytest
import ray
import yaml

from tests.conftest import tiny_config_values
from tests.drills import (
    interrupt_search_when,
    undisturbed_records,
    wait_for,
)
from tests.tables import assert_every_row_once
from tuner.results import read_predictions
from tuner.spaces import parse_space
from tuner.tune.search import SearchOptions, run_search

pytestmark = [pytest.mark.slow, pytest.mark.ray]  # real processes killed on a real Ray

TINY = {k: v for k, v in tiny_config_values().items() if k not in ("stage1", "device")}


def space_doc(epochs: int, lrs: list[float], **scheduler: object) -> dict:
    return {
        "fixed": {**TINY, "model": "ego_rnn", "stage": 1, "epochs": epochs},
        "grid": {"lr": lrs},
        "scheduler": {"algorithm": "grid", **scheduler},
        "resources": {"cpus": 1, "gpus": 0},
    }


def checkpoints(experiment: Path) -> list[Path]:
    return sorted(experiment.glob("*/checkpoint_*"))


def assert_each_epoch_once(experiment: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    assert_every_row_once(experiment)
    trials = pd.read_parquet(experiment / "trials.parquet")
    epochs = pd.read_parquet(experiment / "epochs.parquet")
    assert set(trials["status"]) == {"TERMINATED"}, trials[["trial_id", "status"]]
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    for trial_id, group in epochs.groupby("trial_id"):
        assert sorted(group["epoch"]) == list(range(1, len(group) + 1)), trial_id
    return trials, epochs


def trainable_pids() -> set[int]:
    """Processes running a Tune function trainable (Ray titles them ``ray::ImplicitFunc``) that
    descend from this process: the trials of its own Ray, not of another test run's."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::ImplicitFunc") and _descends_from_here(int(entry.name)):
                found.add(int(entry.name))
    return found


def _descends_from_here(pid: int) -> bool:
    here = os.getpid()
    while pid > 1:
        try:
            pid = parent_pid(pid)
        except (OSError, IndexError, ValueError):
            return False
        if pid == here:
            return True
    return False


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def raylet_pids(node) -> set[int]:
    from ray._private import ray_constants

    return {info.process.pid for info in node.all_processes[ray_constants.PROCESS_TYPE_RAYLET]}


# -- trial fault -------------------------------------------------------------------------------


def states(experiment: Path) -> list[str]:
    """Resume states the trials of ``experiment`` have written."""
    return sorted(p.name for p in (experiment / "checkpoints").glob("*/state-e*.pt"))


def test_a_trial_killed_between_periodic_checkpoints_replays_to_the_same_metrics(
    local_ray, synthetic_root, tmp_path
):
    epochs = 5
    experiment = tmp_path / "results" / "trialkill"
    killed: dict[str, object] = {}

    def kill_after_the_first_checkpoint() -> None:
        # checkpoint_every 2: the state after epoch 2 is registered with epoch 3's report, and
        # the next one is written after epoch 4
        wait_for(lambda: len(checkpoints(experiment)) == 1)
        [pid] = wait_for(lambda: trainable_pids() - earlier)
        os.kill(pid, signal.SIGKILL)
        killed.update(checkpoints=len(checkpoints(experiment)), states=states(experiment))

    earlier = trainable_pids()
    killer = threading.Thread(target=kill_after_the_first_checkpoint, daemon=True)
    killer.start()
    slower = {"crop_size": 128, "frames": 4}  # epochs long enough to kill the trial inside one
    doc = space_doc(epochs, [1e-3])
    doc["fixed"].update(checkpoint_every=2, **slower)
    values = {**TINY, **slower, "model": "ego_rnn", "stage": 1, "epochs": epochs, "lr": 1e-3}
    reference: list[pd.DataFrame] = []  # the undisturbed run, trained meanwhile on this process
    undisturbed = threading.Thread(
        target=lambda: reference.append(undisturbed_records(synthetic_root, values)), daemon=True
    )
    undisturbed.start()
    outcome = run_search(
        parse_space(doc, source="trialkill.yaml", name="trialkill"),
        SearchOptions(
            data=synthetic_root, storage=tmp_path / "results", name="trialkill", verbose=0
        ),
    )
    killer.join(timeout=10)
    undisturbed.join(timeout=300)
    assert killed == {"checkpoints": 1, "states": ["state-e00002.pt"]}, "kill between checkpoints"
    assert outcome.num_errors == 0

    trials, rows = assert_each_epoch_once(experiment)
    assert len(rows) == epochs
    assert trials["num_failures"].tolist() == [1]  # retried once, from epoch 2's state
    [expected] = reference
    measured = rows.sort_values("epoch").reset_index(drop=True)[list(expected.columns)]
    pd.testing.assert_frame_equal(
        measured.astype(float), expected.astype(float), check_exact=False, rtol=1e-6
    )
    # the predictions of the replayed epochs are kept once too
    predictions = read_predictions(experiment)
    assert not predictions.duplicated(["trial_id", "epoch", "video"]).any()
    assert len(predictions) == epochs * predictions["video"].nunique()
    # periodic checkpoints: epochs 2 and 4 and the last, nothing persisted in between
    persisted = rows.set_index("epoch")["checkpoint_bytes"]
    assert (persisted.loc[[2, 4, 5]] > 0).all() and (persisted.loc[[1, 3]] == 0).all()


# -- driver fault ------------------------------------------------------------------------------


def test_ctrl_c_stops_the_search_with_130_and_the_command_that_resumes_it(
    synthetic_root, tmp_path, local_ray_address
):
    """SIGINT to the driver, as Ctrl-C in its shell: the trials stop, Tune saves the state, and
    the command says so (not "finished") with egotune's resume command, not Tune's."""
    space = tmp_path / "ctrlc.yaml"
    space.write_text(yaml.safe_dump(space_doc(200, [1e-3, 1e-4])))  # epochs to stop inside
    storage = tmp_path / "results"
    experiment = storage / "ctrlc"
    status, out, err = interrupt_search_when(
        space,
        synthetic_root,
        storage,
        "ctrlc",
        lambda: len(checkpoints(experiment)) >= 1,
        address=local_ray_address,
    )
    assert status == 130, err[-3000:]
    assert "Search ctrlc interrupted" in out and "finished" not in out
    assert out.rstrip().endswith(f"search --resume ctrlc --storage {storage}")
    assert "Tuner.restore" not in out + err and "Traceback" not in err
    assert "egotune: interrupted: stopping the trials" in err
    from ray import tune

    assert tune.Tuner.can_restore(str(experiment))
    assert_every_row_once(experiment)


# -- node loss ---------------------------------------------------------------------------------


def test_trials_of_a_removed_node_finish_on_the_other_node(
    own_ray_cluster, synthetic_root, tmp_path
):
    from ray.cluster_utils import Cluster

    # the head checks its nodes every half second and marks one dead after two missed checks
    # (Ray: every 3 s, after 5), so the test sees the removed node dead in about a second
    health = {"health_check_period_ms": 500, "health_check_failure_threshold": 2}
    cluster = Cluster(
        initialize_head=True,
        connect=True,
        head_node_args={"num_cpus": 0, "_system_config": health},
    )
    try:
        nodes = [cluster.add_node(num_cpus=2), cluster.add_node(num_cpus=2)]
        cluster.wait_for_nodes()
        experiment = tmp_path / "results" / "nodeloss"
        removed: dict[str, object] = {}

        def remove_the_node_running_trials() -> None:
            wait_for(lambda: len(checkpoints(experiment)) >= 1)
            raylet = parent_pid(min(wait_for(trainable_pids)))  # a running trial's raylet
            [node] = [n for n in nodes if raylet in raylet_pids(n)]
            cluster.remove_node(node, allow_graceful=False)
            removed.update(raylet=raylet)

        remover = threading.Thread(target=remove_the_node_running_trials, daemon=True)
        remover.start()
        outcome = run_search(
            parse_space(space_doc(6, [1e-3, 1e-4]), source="nodeloss.yaml", name="nodeloss"),
            SearchOptions(
                data=synthetic_root,
                storage=tmp_path / "results",
                name="nodeloss",
                address=cluster.address,
                verbose=0,
            ),
        )
        remover.join(timeout=10)
        assert removed, "no node was removed"
        assert outcome.num_errors == 0
        trials, rows = assert_each_epoch_once(experiment)
        assert len(rows) == 2 * 6
        assert trials["num_failures"].sum() >= 1
        # the head has no CPUs and every process of the removed node is gone, so the retries
        # ran on the survivor; Ray marks the node dead once its health checks time out
        with pytest.raises(ProcessLookupError):
            os.kill(int(removed["raylet"]), 0)  # type: ignore[call-overload]

        def alive_cpus() -> list[float]:
            return sorted(n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"])

        assert wait_for(lambda: alive_cpus() == [0, 2], timeout=120, every=1.0)
    finally:
        ray.shutdown()
        cluster.shutdown()
