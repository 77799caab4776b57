"""Bad command-line flags of ``search`` and ``train``: storage, address, resume, names. Each is one
line on stderr naming the flag, refused before Ray starts and before anything is overwritten."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
from collections import namedtuple
from pathlib import Path

import pytest

from tests.console import error_line
from tests.gtea_trees import Tree, make_tree
from tuner.cli import main
from tuner.results import write_experiment_metadata

DiskUsage = namedtuple("DiskUsage", "total used free")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return make_tree(tmp_path_factory.mktemp("data") / "GTEA61", classes=("a", "b"), frames=3)


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    """A results folder holding two earlier experiments."""
    return write_earlier_experiments(tmp_path / "results")


def write_earlier_experiments(folder: Path) -> Path:
    """Experiments ``alpha`` and ``beta`` (their metadata only) in ``folder``."""
    for name in ("alpha", "beta"):
        write_experiment_metadata(
            folder / name,
            space_name="demo",
            space_text="fixed: {model: ego_rnn}\n",
            overrides={},
            dataset_fingerprint="0" * 64,
            argv=["egotune"],
        )
    return folder


def contents(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def search(tree: Tree, *flags: str) -> list[str]:
    return ["search", "demo", "--data", str(tree.root), *flags]


def test_storage_under_a_regular_file_is_not_writable(tree, tmp_path, no_ray, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    assert main(search(tree, "--storage", str(blocker / "results"))) == 2
    assert error_line(capsys.readouterr().err) == (
        f"egotune: error: --storage {blocker / 'results'}: not writable (Not a directory); "
        "choose another folder or set $EGOTUNE_STORAGE"
    )
    assert blocker.read_text() == "keep me" and no_ray == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_storage_is_not_writable(tree, storage, no_ray, capsys):
    before = contents(storage)
    storage.chmod(0o555)
    try:
        assert main(search(tree, "--storage", str(storage), "--name", "gamma")) == 2
    finally:
        storage.chmod(0o755)
    assert "not writable (Permission denied)" in error_line(capsys.readouterr().err)
    assert contents(storage) == before and no_ray == []


def test_a_disk_that_refuses_writes_fails_the_write_probe(
    tree, storage, no_ray, monkeypatch, capsys
):
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    before = contents(storage)
    monkeypatch.setattr("tuner.tune.search.os.fsync", full)
    assert main(search(tree, "--storage", str(storage), "--name", "gamma")) == 2
    line = error_line(capsys.readouterr().err)
    assert f"--storage {storage}: not writable (No space left on device)" in line
    assert contents(storage) == before and no_ray == []
    assert not [p for p in storage.iterdir() if p.name.startswith(".egotune-write-test")]


def test_a_nearly_full_disk_is_refused_before_the_search(
    tree, storage, no_ray, monkeypatch, capsys
):
    seen: list[Path] = []

    def nearly_full(path: Path) -> DiskUsage:
        seen.append(Path(path))
        return DiskUsage(100 * 2**30, 100 * 2**30 - 200 * 2**20, 200 * 2**20)

    before = contents(storage)
    monkeypatch.setattr("tuner.tune.search.shutil.disk_usage", nearly_full)
    assert main(search(tree, "--storage", str(storage), "--name", "gamma")) == 2
    line = error_line(capsys.readouterr().err)
    state, room = (int(n.replace(",", "")) for n in re.findall(r"([\d,]+) MiB\b", line)[1:])
    assert line == (
        f"egotune: error: --storage {storage}: only 200 MiB free; a trial of this search keeps "
        f"checkpoints of up to {state:,} MiB each and needs room for at least 2 ({room:,} MiB); "
        "free some space or choose another folder"
    )
    assert room > 200 and abs(room - 2 * state) <= 1  # a real model's states, rounded
    assert seen == [storage] and contents(storage) == before and no_ray == []


def test_enough_free_space_passes_the_storage_checks(tree, storage, no_ray, monkeypatch, capsys):
    def roomy(path: Path) -> DiskUsage:
        return DiskUsage(100 * 2**30, 0, 100 * 2**30)

    monkeypatch.setattr("tuner.tune.search.shutil.disk_usage", roomy)
    assert main(search(tree, "--storage", str(storage), "--name", "gamma")) == 1
    assert "pre-flight passed" in error_line(capsys.readouterr().err)
    assert no_ray == [None]


@pytest.mark.timeout(60)  # a hang guard: an unreachable head must fail, not wait
def test_an_unreachable_address_fails_fast_naming_the_flag(tree, tmp_path, monkeypatch, capsys):
    # checked before any connection held in this process (the suite's local Ray) is reused
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "no-token"))  # leave ray's mode alone
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening: refused
        code = main(search(tree, "--storage", str(tmp_path / "r"), "--address", address))
    assert code == 1
    assert error_line(capsys.readouterr().err) == (
        f"egotune: error: --address {address}: no Ray head answers there (Connection refused); "
        "start one with `ray start --head` or check the address"
    )
    assert main(search(tree, "--storage", str(tmp_path / "r"), "--address", "head:port")) == 2
    assert "--address head:port: expected HOST:PORT" in error_line(capsys.readouterr().err)


def test_resume_of_an_unknown_experiment_lists_those_in_the_storage(storage, tmp_path, capsys):
    assert main(["search", "--resume", "gamma", "--storage", str(storage)]) == 2
    assert error_line(capsys.readouterr().err) == (
        f"egotune: error: --resume gamma: no experiment at {storage / 'gamma'}; experiments in "
        f"{storage}: alpha, beta; check the name and --storage"
    )
    absent = tmp_path / "elsewhere"
    assert main(["search", "--resume", "gamma", "--storage", str(absent)]) == 2
    assert f"{absent} does not exist" in error_line(capsys.readouterr().err)
    assert not absent.exists()


def test_resume_of_an_experiment_with_a_damaged_record_keeps_it(storage, capsys):
    record = storage / "alpha" / "experiment.json"
    record.write_text('{"space": ')
    assert main(["search", "--resume", "alpha", "--storage", str(storage)]) == 1
    assert f"{record} is unreadable" in error_line(capsys.readouterr().err)
    assert record.read_text() == '{"space": '


def test_resume_without_a_name_and_search_without_space_or_data(tree, capsys):
    assert main(["search", "--resume"]) == 2
    assert "--resume: name the experiment" in error_line(capsys.readouterr().err)
    assert main(["search", "--data", str(tree.root)]) == 2
    assert "SPACE: name a search space" in error_line(capsys.readouterr().err)
    assert main(["search", "demo"]) == 2
    assert "--data: required" in error_line(capsys.readouterr().err)
    assert main(["search", "demo", "--data", str(tree.root), "--max-failures", "-1"]) == 2
    assert "--max-failures -1: must be 0 or more" in error_line(capsys.readouterr().err)


def test_an_existing_experiment_name_is_refused_and_kept(tree, storage, no_ray, capsys):
    before = contents(storage)
    assert main(search(tree, "--storage", str(storage), "--name", "alpha")) == 2
    assert f"--name alpha: {storage / 'alpha'} already exists; pass --resume" in error_line(
        capsys.readouterr().err
    )
    assert contents(storage) == before and no_ray == []


def test_train_out_under_a_regular_file_is_not_writable(tree, tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    out = blocker / "run"
    args = ["train", "--model", "ego_rnn", "--data", str(tree.root), "--out", str(out)]
    assert main(args) == 2
    assert error_line(capsys.readouterr().err) == (
        f"egotune: error: --out {out}: not writable (Not a directory); choose another folder"
    )
    assert blocker.read_text() == "keep me"


def test_train_refuses_to_overwrite_a_run(tree, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "epochs.jsonl").write_text(json.dumps({"epoch": 1}) + "\n")
    args = ["train", "--model", "ego_rnn", "--data", str(tree.root), "--out", str(out)]
    assert main(args) == 2
    assert f"--out {out}: already holds a run" in error_line(capsys.readouterr().err)
    assert main([*args, "--resume"]) == 2
    assert "checkpoints holds no checkpoint; nothing to resume" in error_line(
        capsys.readouterr().err
    )
    assert (out / "epochs.jsonl").read_text() == '{"epoch": 1}\n'
