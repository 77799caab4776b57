"""`egotune replay`: one-line errors for bad flags and experiments it cannot replay.

The command on the shipped fixture runs in test_replay.py, beside the other Ray replays.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner import cli
from tuner.results import write_experiment_metadata

FIXTURES = Path(__file__).resolve().parents[2] / "bench" / "fixtures"
FIXTURE = "fig10-synthetic"


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
