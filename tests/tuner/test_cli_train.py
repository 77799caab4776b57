"""``egotune train`` as a user runs it: JSON lines, refusals, and SIGKILL followed by --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tuner.cli import main
from tuner.training.checkpoints.files import load_checkpoint
from tuner.training.engine import TIME_FIELDS

TINY = [
    "--set", "backbone=resnet18", "--set", "weights=none", "--set", "crop_size=32",
    "--set", "frames=3", "--set", "batch_size=4", "--set", "mem_size=32",
    "--set", "num_workers=0", "--set", "device=cpu",
]  # fmt: skip


def egotune(*args: str) -> list[str]:
    return [sys.executable, "-m", "tuner.cli", *args]


def train_args(root: Path, out: Path, *extra: str) -> list[str]:
    return egotune(
        "train", "--model", "ego_rnn", "--data", str(root), "--out", str(out), *TINY, *extra
    )


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def in_process(root: Path, out: Path, *extra: str) -> list[str]:
    """``egotune train`` arguments for ``tuner.cli.main`` (the test's own process)."""
    return train_args(root, out, *extra)[3:]


def test_train_prints_one_json_line_per_epoch_and_writes_checkpoints(
    synthetic_root, tmp_path, capsys
):
    out = tmp_path / "run"
    assert main(in_process(synthetic_root, out, "--stage", "2", "--set", "epochs=2")) == 0
    records = json_lines(capsys.readouterr().out)
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(r["stage"] == 2 for r in records)
    assert (out / "checkpoints" / "state-e00002.pt").is_file()
    assert (out / "checkpoints" / "best.pt").is_file()
    assert len((out / "epochs.jsonl").read_text().splitlines()) == 2

    assert main(in_process(synthetic_root, out, "--set", "epochs=2")) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert len((out / "epochs.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--set", "lrr=1"], "lrr"),
        (["--set", "lr=-1"], "lr"),
        (["--set", "frames"], "frames"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_key(
    synthetic_root, tmp_path, extra, needle, capsys
):
    assert main(in_process(synthetic_root, tmp_path / "run", *extra)) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_resume_from_a_corrupt_checkpoint_fails_and_keeps_the_file(
    synthetic_root, tmp_path, capsys
):
    out = tmp_path / "run"
    assert main(in_process(synthetic_root, out, "--set", "epochs=1")) == 0
    latest = out / "checkpoints" / "state-e00001.pt"
    latest.write_bytes(latest.read_bytes()[:300])
    damaged = latest.read_bytes()
    capsys.readouterr()
    assert main(in_process(synthetic_root, out, "--set", "epochs=2", "--resume")) == 1
    err = capsys.readouterr().err
    assert "state-e00001.pt" in err and "corrupt" in err
    assert latest.read_bytes() == damaged


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_reprints_the_same_epochs(synthetic_root, tmp_path):
    args = ("--stage", "2", "--set", "epochs=4")
    straight = subprocess.run(
        train_args(synthetic_root, tmp_path / "straight", *args),
        capture_output=True,
        text=True,
        check=True,
    )
    reference = {r["epoch"]: r for r in json_lines(straight.stdout)}

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        train_args(synthetic_root, out, *args), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    for _ in range(2):  # kill as soon as epoch 2 is reported: epoch 3 (or later) is under way
        assert proc.stdout.readline(), "training ended before epoch 2"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    newest = max((out / "checkpoints").glob("state-e*.pt"))
    done_before = load_checkpoint(newest)["epoch"]
    assert 1 <= done_before < 4  # async periodic checkpoints: epoch 2 may be replayed

    resumed = subprocess.run(
        train_args(synthetic_root, out, *args, "--resume"),
        capture_output=True,
        text=True,
        check=True,
    )
    records = {r["epoch"]: r for r in json_lines(resumed.stdout)}
    assert sorted(records) == list(range(done_before + 1, 5))
    for epoch, record in records.items():
        expected = {k: v for k, v in reference[epoch].items() if k not in TIME_FIELDS}
        assert {k: v for k, v in record.items() if k not in TIME_FIELDS} == expected
    logged = [json.loads(line)["epoch"] for line in (out / "epochs.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4]


def test_classification_targets_with_grid_downsampling_warn_naming_the_key(tmp_path, capsys):
    code = main(
        [
            "train", "--model", "ego_rnn_ms", "--data", str(tmp_path / "missing"),
            "--out", str(tmp_path / "out"), "--set", "ms_downsample=grid",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "warning: ms_downsample: grid with ms_task=classification" in err


@pytest.mark.parametrize(
    ("model", "extra", "warned"),
    [
        ("ego_rnn", [], True),
        ("ego_rnn_ms", ["--stage", "2"], True),
        ("ego_rnn", ["--stage", "1"], False),
        ("ego_rnn", ["--stage", "both"], False),
        ("ego_rnn", ["--set", "init_checkpoint=stage1/best.pt"], False),
        ("flow_resnet34", [], False),
        ("ego_rnn", ["--resume"], False),  # the run's start said it
    ],
)
def test_stage_2_without_a_stage_1_checkpoint_warns_once(model, extra, warned, tmp_path, capsys):
    argv = ["train", "--model", model, "--data", str(tmp_path / "missing")]
    assert main([*argv, "--out", str(tmp_path / "out"), *extra]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "stage-1 checkpoint" in line]
    expected = (
        f"egotune: warning: stage 2 of {model} starts without a stage-1 checkpoint (stage 2 is "
        "the default): pass --stage 1 or --stage both, or --set init_checkpoint=PATH to a "
        "stage-1 best.pt"
    )
    assert lines == ([expected] if warned else [])
