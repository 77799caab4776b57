"""Experiment names and path flags as the command line takes them: a name is one safe folder name,
and relative paths reach the search as absolute ones (Ray's workers run in other folders)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.gtea_trees import make_tree
from tuner.cli import main
from tuner.errors import EgotuneError

BAD_NAMES = ["../escape", "/srv/elsewhere", "a/b", ".hidden", "..", "e; touch x", "a|b"]


def one_error_line(err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("egotune: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("command", ["search", "demo", "resume", "submit"])
def test_unsafe_experiment_names_are_refused_naming_the_flag(
    tmp_path, monkeypatch, capsys, name, command
):
    monkeypatch.chdir(tmp_path)
    storage = tmp_path / "results"
    common = ["--storage", str(storage)]
    argv = {
        "search": ["search", "demo", "--data", "data", *common, "--name", name],
        "demo": ["demo", *common, "--name", name],
        "resume": ["search", "--resume", name, *common],
        "submit": ["submit", "demo", "--address", "http://127.0.0.1:9", "--data", "/d",
                   "--name", name],
    }[command]  # fmt: skip
    assert main(argv) == 2
    flag = "--resume" if command == "resume" else "--name"
    one_error_line(capsys.readouterr().err, f"{flag} {name}:", "an experiment name is one folder")
    assert sorted(os.listdir(tmp_path)) == []  # nothing written, inside or outside --storage


def test_a_non_ascii_name_passes_the_name_check(tmp_path, monkeypatch, capsys):
    def connect(address: str | None, **kwargs: object) -> None:
        raise EgotuneError("pre-flight passed: Ray would start here")

    monkeypatch.setattr("tuner.tune.search.connect", connect)
    tree = make_tree(tmp_path / "data", classes=("a", "b"), frames=3)
    argv = ["search", "demo", "--data", str(tree.root), "--storage", str(tmp_path / "results")]
    assert main([*argv, "--name", "résumé-実験"]) == 1
    one_error_line(capsys.readouterr().err, "pre-flight passed")


def test_ray_metric_tags_take_a_non_ascii_experiment_name():
    import torch

    from tuner.tune.trainable import _export_metrics

    metrics = {"val_acc": 50.0, "epoch": 1, "clips_per_s": 10.0}
    tags = {"experiment": "résumé-実験", "trial": "t_00000"}
    _export_metrics(metrics, tags, torch.device("cpu"))  # raised UnicodeEncodeError before


def test_relative_data_storage_and_paths_reach_the_search_absolute(tmp_path, monkeypatch, capsys):
    seen = {}

    def run_search(space, options):
        seen.update(data=options.data, storage=options.storage, space=space)
        raise EgotuneError("stopped before Ray")

    monkeypatch.setattr("tuner.tune.search.run_search", run_search)
    monkeypatch.chdir(tmp_path)
    argv = ["search", "demo", "--data", "data", "--storage", "results", "--name", "rel"]
    assert main([*argv, "--set", "init_checkpoint=ckpt/best.pt"]) == 1
    one_error_line(capsys.readouterr().err, "stopped before Ray")
    assert seen["data"] == tmp_path / "data"
    assert seen["storage"] == tmp_path / "results"
    fixed = seen["space"].fixed
    assert Path(fixed["init_checkpoint"]) == tmp_path / "ckpt" / "best.pt"


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--storage", "rel"], "--storage rel"),
        (["--set", "init_checkpoint=rel/best.pt"], "--set init_checkpoint rel/best.pt"),
    ],
)
def test_submit_refuses_relative_cluster_paths(capsys, flags, named):
    argv = ["submit", "demo", "--address", "http://127.0.0.1:9", "--data", "/mnt/d", *flags]
    assert main(argv) == 2
    one_error_line(capsys.readouterr().err, f"{named}: a relative path")


def test_submit_refuses_a_relative_dataset(capsys):
    assert main(["submit", "demo", "--address", "http://127.0.0.1:9", "--data", "data"]) == 2
    one_error_line(capsys.readouterr().err, "--data data: a relative path")
