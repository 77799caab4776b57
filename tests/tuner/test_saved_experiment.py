"""An experiment saved by an earlier version (tests/fixtures/saved-experiment, written by
``python -m tests.fixtures.make_saved_experiment``) still reads and still resumes.

Its driver was killed with one trial ended and one part-way: Ray Tune's pickles name the
trainable, the callbacks and the searcher by module, and the part-way trial continues from
egotune's resume state.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.make_saved_experiment import STORAGE
from tests.tables import assert_every_row_once
from tuner.results import read_epochs, read_trials

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "saved-experiment"
NAME = FIXTURE.name


@pytest.fixture
def saved() -> Iterator[Path]:
    """The fixture, copied to the folder it was written in (:data:`STORAGE`)."""
    shutil.rmtree(STORAGE, ignore_errors=True)
    shutil.copytree(FIXTURE, STORAGE / NAME)
    yield STORAGE
    shutil.rmtree(STORAGE, ignore_errors=True)


def _egotune(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuner.cli", *argv], capture_output=True, text=True, timeout=600
    )


def test_an_experiment_saved_by_an_earlier_version_reads_and_resumes(
    saved: Path, synthetic_root: Path, local_ray_address: str
) -> None:
    experiment = saved / NAME
    version = json.loads((experiment / "experiment.json").read_text())["code_version"]
    before = read_epochs(experiment)
    trials = read_trials(experiment).set_index("trial_id")
    assert sorted(trials["status"]) == ["RUNNING", "TERMINATED"], "fixture changed"
    ended = trials.index[trials["status"] == "TERMINATED"][0]
    part_way = trials.index[trials["status"] == "RUNNING"][0]

    top = _egotune("results", "top", NAME, "--storage", str(saved))
    assert top.returncode == 0, top.stderr
    assert f"{trials.loc[ended, 'best_val_acc']:.2f}" in top.stdout

    resumed = _egotune(
        "search", "--resume", NAME, "--storage", str(saved), "--data", str(synthetic_root),
        "--address", local_ray_address,
    )  # fmt: skip
    assert resumed.returncode == 0, f"saved by {version}: {resumed.stderr[-3000:]}"
    assert_every_row_once(experiment, trials=4)
    resumed_trials = read_trials(experiment).set_index("trial_id")
    assert set(resumed_trials["status"]) == {"TERMINATED"}
    assert resumed_trials.loc[part_way, "epochs_run"] > trials.loc[part_way, "epochs_run"]
    after = read_epochs(experiment).set_index(["trial_id", "epoch"])
    kept = before.set_index(["trial_id", "epoch"])
    assert after.loc[kept.index, "val_acc"].tolist() == kept["val_acc"].tolist()
