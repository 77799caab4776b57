"""An experiment is run by one search at a time: two searches of one name, two resumes, a
killed owner taken over, default names that never collide (:mod:`tuner.tune.claim`)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_config_values
from tests.drills import SEARCH, wait_for
from tests.tables import assert_every_row_once
from tuner.errors import UsageError
from tuner.results import read_epochs
from tuner.tune.claim import OWNER_FILE, ExperimentClaim, claim_new_experiment, read_owner

FIXED = {k: v for k, v in tiny_config_values().items() if k not in ("epochs", "stage1", "device")}


def space_file(folder: Path, epochs: int) -> Path:
    doc = {
        "fixed": {**FIXED, "model": "ego_rnn", "stage": 1, "epochs": epochs},
        "grid": {"lr": [1e-3]},
        "scheduler": {"algorithm": "grid"},
        "resources": {"cpus": 0.5, "gpus": 0},  # the trials of both searches run at once
    }
    path = folder / f"claims-{epochs}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def start(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def owned_by(folder: Path, pid: int) -> bool:
    owner = read_owner(folder)
    return bool(owner) and owner["pid"] == pid


@pytest.mark.slow
def test_one_search_at_a_time_runs_an_experiment(synthetic_root, tmp_path, local_ray_address):
    """Real searches at once against one storage: a second search of a running experiment's
    name and a ``--resume`` of it are refused, naming the search that runs it; a killed search's
    claim is taken over by the next ``--resume``, which is the only one to run."""
    storage = tmp_path / "results"
    common = ["--data", str(synthetic_root), "--storage", str(storage)]
    common += ["--address", local_ray_address]
    space = str(space_file(tmp_path, epochs=3))
    first = start([*SEARCH, space, *common, "--name", "same"])
    to_cut = start([*SEARCH, space, *common, "--name", "cut"])
    wait_for(lambda: owned_by(storage / "same", first.pid) or first.poll() is not None)
    refused = [
        start([*SEARCH, space, *common, "--name", "same"]),
        start([*SEARCH, "--resume", "same", *common]),
    ]
    wait_for(lambda: (storage / "cut").is_dir() and len(read_epochs(storage / "cut")) >= 1)
    to_cut.kill()  # the driver only, as `kill -9 <pid>` would (the cluster ends its trials)
    to_cut.communicate(timeout=60)
    resumed = start([*SEARCH, "--resume", "cut", *common])
    wait_for(lambda: owned_by(storage / "cut", resumed.pid) or resumed.poll() is not None)
    refused.append(start([*SEARCH, "--resume", "cut", *common]))

    said = [search.communicate(timeout=300) for search in refused]
    assert [search.returncode for search in refused] == [2, 2, 2], said
    assert f"already exists and is being run by process {first.pid} on host" in said[0][1]
    assert f"experiment same is being run by process {first.pid}" in said[1][1]
    assert f"experiment cut is being run by process {resumed.pid}" in said[2][1]
    for search in (first, resumed):
        _out, err = search.communicate(timeout=600)
        assert search.returncode == 0, err[-3000:]
    assert "ended without releasing it (killed); this search takes it over" in err
    for name in ("same", "cut"):
        assert_every_row_once(storage / name, trials=1)
        assert set(read_epochs(storage / name)["epoch"]) == {1, 2, 3}
        assert not (storage / name / OWNER_FILE).exists()  # released at the end


def _claim_default(storage: str, name: str, names: Queue, done: Event) -> None:
    claim = claim_new_experiment(Path(storage), name, default=True)
    names.put(claim.folder.name)
    done.wait(60)  # hold the claim until the test has seen every name


def test_default_names_started_in_the_same_second_never_collide(tmp_path):
    context = multiprocessing.get_context("fork")
    names, done = context.Queue(), context.Event()
    base = "demo-20261204-213000"
    workers = [
        context.Process(target=_claim_default, args=(str(tmp_path), base, names, done))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    taken = sorted(names.get(timeout=60) for _ in workers)
    done.set()
    for worker in workers:
        worker.join(timeout=60)
    assert taken == sorted([base, f"{base}-2", f"{base}-3"])


def test_a_claim_is_refused_while_held_and_taken_over_once_its_holder_is_gone(tmp_path):
    folder = tmp_path / "exp"
    held = claim_new_experiment(tmp_path, "exp", default=False)
    with pytest.raises(UsageError, match=f"being run by process {os.getpid()} on host"):
        ExperimentClaim.take(folder)
    held.release()
    with ExperimentClaim.take(folder) as again:
        assert again.previous is None  # released properly: nothing to take over
    # a holder that died without releasing: the kernel dropped its lock, its record remains
    code = (
        "import sys; from pathlib import Path; from tuner.tune.claim import ExperimentClaim; "
        "ExperimentClaim.take(Path(sys.argv[1])); import os; os._exit(0)"
    )
    dead = subprocess.run([sys.executable, "-c", code, str(folder)], check=True)
    assert dead.returncode == 0 and read_owner(folder) is not None
    with ExperimentClaim.take(folder) as taken:
        assert taken.previous is not None and taken.previous["pid"] != os.getpid()
