"""`egotune replay` on the shipped Fig. 10 fixture, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray

from tuner import cli
from tuner.experiment import read_epochs, write_experiment_metadata

FIXTURES = Path(__file__).resolve().parents[2] / "bench" / "fixtures"
FIXTURE = "fig10-synthetic"


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():  # another module's cluster: use it and leave it running
        yield
        return
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_asha_replay_of_the_fixture_reports_its_cost_against_the_grid(
    local_ray, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["replay", FIXTURE, "--storage", str(FIXTURES), "--scheduler", "asha", "--seeds", "1"]
    assert cli.main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    epochs = read_epochs(FIXTURES / FIXTURE)
    assert report["trials"] == epochs["trial_id"].nunique() == 36
    assert report["grid_epochs"] == len(epochs)
    assert report["grid_best"] == epochs["val_acc"].max()
    assert report["searches_over"] == ["gamma", "lr", "milestones", "weight_decay"]
    (run,) = report["runs"]
    assert run["algorithm"] == "asha" and run["trials"] == 36
    assert run["epochs"] < report["grid_epochs"]  # ASHA stopped some trials
    assert run["best"] <= report["grid_best"]
    if run["epochs_to_target"] is not None:
        assert run["fraction_to_target"] == run["epochs_to_target"] / report["grid_epochs"]


@pytest.mark.parametrize(
    ("extra", "needle", "code"),
    [
        (["--seeds", "0"], "--seeds 0", 2),
        (["--scheduler", "hyperband"], "--scheduler hyperband", 2),
        (["--grace-period", "2"], "--grace-period: only asha", 2),
        (["--num-samples", "4"], "--num-samples: only random", 2),
    ],
)
def test_bad_flags_are_one_line_errors(
    extra: list[str], needle: str, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["replay", FIXTURE, "--storage", str(FIXTURES), "--scheduler", "grid", *extra]
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_unknown_experiment_and_one_without_epochs_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["replay", "nope", "--storage", str(tmp_path), "--scheduler", "asha"]) == 1
    err = capsys.readouterr().err
    assert "'nope'" in err and len(err.strip().splitlines()) == 1
    write_experiment_metadata(
        tmp_path / "killed",
        space_name="x",
        space_text="",
        overrides={},
        dataset_fingerprint="",
        argv=[],
    )
    assert cli.main(["replay", "killed", "--storage", str(tmp_path), "--scheduler", "asha"]) == 1
    err = capsys.readouterr().err
    assert "no epochs with val_acc" in err and len(err.strip().splitlines()) == 1
