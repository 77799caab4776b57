"""Security defaults: YAML only through ``yaml.safe_load``, checkpoints only with
``weights_only=True``, and no user string ever reaches a shell.

ruff's flake8-bandit rules (``S`` in pyproject.toml, run by ``make lint``) refuse ``shell=True``,
``os.system``/``os.popen``, ``eval``/``exec``, ``pickle`` loads and ``yaml.load`` without a loader.
The scan below keeps what those rules cannot express: any yaml loader but ``safe_load``,
``torch.load`` without ``weights_only=True``, and a ``shell=`` that is not literally ``False``.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from models import load_state_dict_file
from tests.gtea_trees import make_tree
from tuner.cli import main
from tuner.errors import EgotuneError
from tuner.results import read_experiment_metadata, write_experiment_metadata
from tuner.training.checkpoints.files import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data_pipeline", "models", "tuner", "bench")

_UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all"}
_UNSAFE_YAML_LOADERS = {"Loader", "UnsafeLoader", "FullLoader", "UnsafeConstructor"}


def _dotted(node: ast.expr) -> tuple[str, str] | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.value.id, node.attr
    return None


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_calls(source: str) -> Iterator[tuple[int, str]]:
    """``(line, what)`` of every unsafe construct in ``source`` that ruff's rules let through."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "yaml":
            for alias in node.names:
                if alias.name in _UNSAFE_YAML | _UNSAFE_YAML_LOADERS:
                    yield node.lineno, f"from yaml import {alias.name}"
        if isinstance(node, ast.Attribute) and _dotted(node) in {
            ("yaml", name) for name in _UNSAFE_YAML_LOADERS
        }:
            yield node.lineno, f"yaml.{node.attr}"
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        if name is not None and name[0] == "yaml" and name[1] in _UNSAFE_YAML:
            yield node.lineno, f"yaml.{name[1]}("
        if "Loader" in keywords:
            yield node.lineno, "Loader="
        if "shell" in keywords and not (
            isinstance(keywords["shell"], ast.Constant) and keywords["shell"].value is False
        ):
            yield node.lineno, "shell="
        if name == ("torch", "load") and not _is_true(keywords.get("weights_only")):
            yield node.lineno, "torch.load( without weights_only=True"


def package_sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_the_packages_read_yaml_and_checkpoints_safely_and_never_use_a_shell():
    sources = package_sources()
    assert len(sources) > 50  # the scan sees the whole code base
    found = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in sources
        for line, what in unsafe_calls(path.read_text(encoding="utf-8"))
    ]
    assert found == []


@pytest.mark.parametrize(
    "snippet",
    [
        "import yaml\nyaml.load(text)",
        "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
        "import yaml\nyaml.unsafe_load(text)",
        "import yaml\nyaml.full_load(text)",
        "from yaml import load",
        "import yaml\nloader = yaml.UnsafeLoader",
        "import subprocess\nsubprocess.Popen(cmd, shell=flag)",
        "import torch\ntorch.load(path)",
        "import torch\ntorch.load(path, weights_only=False)",
    ],
)
def test_the_scan_finds_each_unsafe_construct(snippet):
    assert list(unsafe_calls(snippet))


@pytest.mark.parametrize(
    "snippet",
    [
        "import yaml\nyaml.safe_load(text)",
        "import subprocess\nsubprocess.run(['git', 'describe'], shell=False)",
        "import torch\ntorch.load(path, map_location='cpu', weights_only=True)",
        "model.eval()",
        '"""yaml.load( in a docstring is text, not a call"""',
    ],
)
def test_the_scan_accepts_the_safe_forms(snippet):
    assert list(unsafe_calls(snippet)) == []


# -- checkpoints ---------------------------------------------------------------------------------


def _plant(path: str) -> None:
    """What the planted object runs when it is unpickled: it creates ``path``."""
    Path(path).touch()


class Planted:
    """An object whose unpickling runs ``_plant`` - what a hostile checkpoint would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return _plant, (str(self.marker),)


def hostile_file(path: Path, marker: Path, wrapped: bool = True) -> Path:
    payload = {"weights": torch.ones(2), "extra": Planted(marker)}
    torch.save({"format": CHECKPOINT_FORMAT, **payload} if wrapped else payload, path)
    return path


def test_the_planted_object_does_run_when_unpickled_without_weights_only(tmp_path):
    marker = tmp_path / "ran"
    torch.load(hostile_file(tmp_path / "x.pt", marker), weights_only=False)
    assert marker.exists()  # so the refusals below are refusals of a live payload


def test_a_checkpoint_with_a_pickled_object_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = hostile_file(tmp_path / "latest.pt", marker)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"{path}: refused to load") and "test_security._plant" in message
    assert "\n" not in message and "weights_only" not in message
    assert not marker.exists()


def test_a_weights_file_with_a_pickled_object_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = hostile_file(tmp_path / "backbone.pth", marker, wrapped=False)
    refused = r"backbone\.pth': refused to load.*imports tests\.test_security\._plant"
    with pytest.raises(ValueError, match=refused) as caught:
        load_state_dict_file(path)
    assert "\n" not in str(caught.value) and "weights_only" not in str(caught.value)
    assert not marker.exists()


def test_train_resume_refuses_a_hostile_checkpoint_in_one_line(tmp_path, capsys):
    tree = make_tree(tmp_path / "data", classes=("a", "b"), frames=3)
    out, marker = tmp_path / "run", tmp_path / "ran"
    (out / "checkpoints").mkdir(parents=True)
    hostile_file(out / "checkpoints" / "state-e00001.pt", marker)
    args = ["train", "--model", "ego_rnn", "--data", str(tree.root), "--out", str(out), "--resume"]
    tiny = ["weights=none", "bn_calibration=off", "backbone=resnet18", "device=cpu", "crop_size=64"]
    assert main([*args, *(f"--set={value}" for value in tiny)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"{out / 'checkpoints' / 'state-e00001.pt'}: refused to load" in err
    assert not marker.exists()


# -- no shell ------------------------------------------------------------------------------------

HOSTILE = "e; touch pwned1 && $(touch pwned2) `touch pwned3` | tee pwned4 & touch pwned5 #"


def test_shell_metacharacters_in_names_and_paths_run_nothing(tmp_path, monkeypatch, capsys):
    def connect(address: str | None, **kwargs: object) -> None:
        raise EgotuneError("pre-flight passed: Ray would start here")

    monkeypatch.setattr("tuner.tune.search.connect", connect)
    monkeypatch.chdir(tmp_path)  # a command that did run would create its files here
    tree = make_tree(tmp_path / "data", classes=("a", "b"), frames=3)
    storage = tmp_path / "results; touch pwned6 $(touch pwned7)"
    search = ["search", "demo", "--data", str(tree.root), "--storage", str(storage)]
    assert main([*search, "--name", HOSTILE]) == 2  # not a safe experiment name
    assert f"--name {HOSTILE}: characters not allowed" in capsys.readouterr().err
    assert main([*search, "--name", "safe"]) == 1  # the hostile storage path is taken literally
    assert "pre-flight passed" in capsys.readouterr().err
    write_experiment_metadata(  # runs `git describe` for the code version
        storage / HOSTILE,
        space_name=HOSTILE,
        space_text="fixed: {model: ego_rnn}\n",
        overrides={"data": str(tree.root)},
        dataset_fingerprint="0" * 64,
        argv=["egotune", "search", "--name", HOSTILE],
    )
    assert read_experiment_metadata(storage / HOSTILE)["experiment"] == HOSTILE
    assert main(["results", "list", "--storage", str(storage)]) == 0
    assert HOSTILE in capsys.readouterr().out
    assert main(["search", "--resume", HOSTILE, "--storage", str(storage), "--name", "x"]) == 2
    assert main(["data", "check", f"{tmp_path}/$(touch pwned8)"]) == 2
    assert sorted(p.name for p in storage.iterdir()) == ["_dataset_checks", HOSTILE]
    assert not list(tmp_path.rglob("pwned*"))
    assert sorted(os.listdir(tmp_path)) == ["data", storage.name]  # nothing else appeared
