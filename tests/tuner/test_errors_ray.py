"""Per-trial resource requests no node can satisfy, on a real local Ray through ``egotune search``:
a one-line error before any trial is queued, never a trial PENDING forever; every request that
does not fit in the same line, named as the user gave it (flag or space file key)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import yaml

from tests.console import error_line
from tests.gtea_trees import Tree, make_tree
from tuner.cli import main


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return make_tree(tmp_path_factory.mktemp("data") / "GTEA61", classes=("a", "b"), frames=3)


@pytest.mark.parametrize(
    ("flag", "value", "culprit"),
    [
        ("--cpus-per-trial", "64", "--cpus-per-trial 64 (lower it: 2 or less)"),
        ("--gpus-per-trial", "1", "--gpus-per-trial 1 (lower it: 0 to train on CPUs)"),
        ("--gpus-per-trial", "0.5", "--gpus-per-trial 0.5 (lower it: 0 to train on CPUs)"),
    ],
)
def test_a_request_no_node_can_satisfy_fails_before_any_trial(
    local_ray, tree, tmp_path: Path, flag, value, culprit, capsys
):
    storage = tmp_path / "results"
    args = ["search", "demo", "--data", str(tree.root), "--storage", str(storage), "--name", "big"]
    assert main([*args, flag, value]) == 2
    assert error_line(capsys.readouterr().err) == (
        "egotune: error: per-trial resources no node of the cluster has (largest node: 2 CPUs, "
        f"0 GPUs): {culprit}"
    )
    assert not (storage / "big").exists()
    assert not (storage / "_prerequisites").exists()
    assert ray.is_initialized()  # the shared cluster is still there for the next case


def greedy_space(folder: Path) -> Path:
    """The demo space asking what the report's grids ask per trial, and more CPUs than any
    machine of the suite has."""
    from tuner.spaces import load_space

    doc = load_space("demo").document
    doc["resources"] = {"cpus": 4096, "gpus": 0.5}
    path = folder / "greedy.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_every_request_the_cluster_cannot_give_is_in_one_line_with_its_file_key(
    local_ray, tree, tmp_path: Path, capsys
):
    space = greedy_space(tmp_path)
    argv = ["search", str(space), "--data", str(tree.root), "--storage", str(tmp_path / "r")]
    assert main(argv) == 2
    assert error_line(capsys.readouterr().err) == (
        "egotune: error: per-trial resources no node of the cluster has (largest node: 2 CPUs, "
        f"0 GPUs): resources.cpus: 4096 in {space} (override it with --cpus-per-trial 2 or less); "
        f"resources.gpus: 0.5 in {space} (override it with --gpus-per-trial 0 to train on CPUs)"
    )


def test_what_this_machine_cannot_give_is_refused_before_ray_starts(tree, tmp_path: Path):
    """A search without ``--address`` on a machine without a GPU (here: none visible to CUDA):
    every problem in one line, and not even ``ray`` imported."""
    space = greedy_space(tmp_path)
    argv = ["search", str(space), "--data", str(tree.root), "--storage", str(tmp_path / "r")]
    code = (
        "import json, sys\n"
        "from tuner.cli import main\n"
        f"status = main({argv!r})\n"
        "print(json.dumps([status, 'ray' in sys.modules]))"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert json.loads(done.stdout) == [2, False], done.stderr
    line = error_line(done.stderr)
    assert line.startswith(
        f"egotune: error: per-trial resources this machine does not have ({os.cpu_count()} CPUs, "
        "no GPU; without --address the search runs here): "
    )
    assert f"resources.cpus: 4096 in {space} (override it with --cpus-per-trial" in line
    assert f"resources.gpus: 0.5 in {space} (override it with --gpus-per-trial 0" in line
    assert line.endswith("; or run it on a cluster with --address")
