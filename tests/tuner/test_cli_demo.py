"""What ``egotune demo`` leaves on disk: each trial's best weights, not its resume states."""

from __future__ import annotations

from pathlib import Path

from tuner.cli.search import _slim_checkpoints


def test_the_demo_keeps_each_trials_best_weights_and_removes_its_resume_states(tmp_path: Path):
    trials = tmp_path / "demo" / "checkpoints"
    files = {
        "finished/best.pt": 50,  # complete best weights: kept
        "finished/best-e00004.pt": 10,
        "finished/state-e00010.pt": 40,
        "finished/branch-e00006.pt": 40,
        "finished/index.json": 1,
        "stopped/best-e00001.pt": 10,
        "stopped/best-e00002.pt": 10,  # newest best of a trial ASHA stopped: kept
        "stopped/state-e00002.pt": 40,
        "stopped/.state-e00003.pt.1a2b.tmp": 5,
        "stopped/ended.json": 1,
    }
    for name, size in files.items():
        (trials / name).parent.mkdir(parents=True, exist_ok=True)
        (trials / name).write_bytes(b"x" * size)
    assert _slim_checkpoints(tmp_path / "demo") == 10 + 40 + 40 + 10 + 40 + 5
    left = sorted(str(p.relative_to(trials)) for p in trials.rglob("*") if p.is_file())
    assert left == [
        "finished/best.pt",
        "finished/index.json",
        "stopped/best-e00002.pt",
        "stopped/ended.json",
    ]
