"""Storage faults met for real: a full disk and a read-only folder (a small tmpfs, mounted for the
test) are named with the folder and what to do; a trials table that fell behind its epochs is
caught up from them."""

from __future__ import annotations

import errno
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tuner.test_results import write_handmade
from tuner.cli import main
from tuner.results import EpochPartWriter, TrialsTableWriter


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 256 KiB tmpfs (skipped where this process may not mount one)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(disk: Path) -> None:
    with (disk / "filler").open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def rows(trial: str, epochs: int) -> list[dict]:
    return [{"trial_id": trial, "epoch": e, "val_acc": 10.0 * e} for e in range(1, epochs + 1)]


def test_a_full_disk_names_the_folder_and_keeps_the_rows(small_disk):
    writer = EpochPartWriter(small_disk / "exp", flush_interval_s=0)
    fill(small_disk)
    for row in rows("t1", 3):
        writer.add(row)
    with pytest.raises(OSError, match="No space left on device") as caught:
        writer.flush()
    message = str(caught.value)
    assert message.startswith(f"{small_disk / 'exp' / 'epochs.parquet'}: cannot write part-")
    assert message.endswith("free space on its disk or choose another --storage")
    assert caught.value.errno == errno.ENOSPC
    assert writer.pending == 3  # kept for the next flush
    assert list((small_disk / "exp" / "epochs.parquet").iterdir()) == []  # no temporary file


def test_a_read_only_folder_names_the_folder_not_a_temporary_file(small_disk):
    trials = TrialsTableWriter(small_disk / "exp")
    trials.update("t1", {"status": "RUNNING"})
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(OSError) as caught:
        trials.write()
    assert str(caught.value) == (
        f"{small_disk / 'exp'}: cannot write trials.parquet there (Read-only file system); "
        "fix the folder's permissions or choose another --storage"
    )


def test_results_export_to_a_full_disk_is_one_line(small_disk, tmp_path, capsys):
    write_handmade(tmp_path / "grid")
    fill(small_disk)
    out = small_disk / "grid.parquet"
    argv = ["results", "export", "grid", "--storage", str(tmp_path), "--format", "parquet"]
    assert main([*argv, "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"egotune: error: {small_disk}: cannot write grid.parquet there (No space left on "
        "device); free space on its disk or choose another --storage"
    ]
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_results_top_reads_epochs_a_stale_trials_table_lacks(tmp_path, capsys):
    """After a driver kill: trials.parquet says PENDING without accuracy, epochs 1-5 on disk."""
    exp = tmp_path / "killed"
    trials = TrialsTableWriter(exp)
    trials.update("t1", {"status": "PENDING", "lr": 0.001, "epochs_run": 0})
    trials.update("t2", {"status": "TERMINATED", "lr": 0.01, "best_val_acc": 30.0,
                         "best_epoch": 2, "epochs_run": 2})  # fmt: skip
    trials.write()
    with EpochPartWriter(exp, flush_interval_s=0) as epochs:
        for row in [*rows("t1", 5), *rows("t2", 2)]:
            epochs.add(row)
    argv = ["results", "top", "killed", "--storage", str(tmp_path), "--no-group", "--json"]
    assert main(argv) == 0
    top = json.loads(capsys.readouterr().out)
    assert [(r["trial_id"], r["best_val_acc"], r["epochs_run"]) for r in top] == [
        ("t1", 50.0, 5),
        ("t2", 30.0, 2),
    ]


def test_trials_that_failed_on_a_full_disk_end_the_search_with_one_line(tmp_path, capsys):
    from tuner.cli.search_summary import egotune_command, print_search_summary, search_summary
    from tuner.spaces import load_space

    exp = tmp_path / "grid"
    write_handmade(exp)
    for trial in ("run_a1", "run_b2"):  # Tune's error.txt of a trial whose checkpoint write failed
        (exp / trial).mkdir()
        (exp / trial / "error.txt").write_text(
            'Failure # 1\nray::ImplicitFunc.train()\n  File "torch/serialization.py", line 967\n'
            "RuntimeError: [enforce fail at inline_container.cc:672] . unexpected pos 4416 vs "
            "4310\nOSError: [Errno 28] No space left on device\n"
        )
    summary = search_summary(
        exp, load_space("demo"), storage_flag=tmp_path, seconds=3.0, num_errors=2
    )
    print_search_summary(summary)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"egotune: error: {exp}: 2 trial(s) failed writing there (No space left on device); "
        f"free space on its disk or choose another --storage, then {egotune_command()} search "
        "--resume grid "
        f"--storage {tmp_path}"
    ]
