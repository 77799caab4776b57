"""Per-trial resource requests no node can satisfy, on a real local Ray through ``egotune search``:
a one-line error before any trial is queued, never a trial PENDING forever."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

from tests.gtea_trees import Tree, make_tree
from tuner.cli import main


def error_line(err: str) -> str:
    """The one ``egotune: error:`` line of ``err``; there is no traceback."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("egotune: error:")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return make_tree(tmp_path_factory.mktemp("data") / "GTEA61", classes=("a", "b"), frames=3)


@pytest.mark.parametrize(
    ("flag", "value", "culprit"),
    [
        ("--cpus-per-trial", "64", "--cpus-per-trial 64"),
        ("--gpus-per-trial", "1", "--gpus-per-trial 1"),
        ("--gpus-per-trial", "0.5", "--gpus-per-trial 0.5"),
    ],
)
def test_a_request_no_node_can_satisfy_fails_before_any_trial(
    local_ray, tree, tmp_path: Path, flag, value, culprit, capsys
):
    storage = tmp_path / "results"
    args = ["search", "demo", "--data", str(tree.root), "--storage", str(storage), "--name", "big"]
    assert main([*args, flag, value]) == 2
    assert error_line(capsys.readouterr().err) == (
        f"egotune: error: {culprit}: no node of the cluster has that much (largest node: 2 CPUs, "
        "0 GPUs); lower the request or add a bigger node"
    )
    assert not (storage / "big").exists()
    assert not (storage / "_prerequisites").exists()
    assert ray.is_initialized()  # the shared cluster is still there for the next case
