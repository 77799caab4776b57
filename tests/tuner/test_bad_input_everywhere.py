"""Every case of the bad-input catalogue (docs/errors.md) through every command that takes that
input: one ``egotune: error:`` line naming the flag, file or path, the documented exit status,
and no traceback, on stdout or stderr.

The other error tests check the exact wording case by case; this one crosses the catalogue with
the commands (``data``, ``train``, ``spaces``, ``search``, ``demo``, ``submit``, ``results``,
``replay``, ``bench``), in this process except where only a fresh interpreter shows the
behaviour (ImageNet weights that cannot be downloaded).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.gtea_trees import Tree, make_tree
from tests.tuner.test_errors_cli import write_earlier_experiments
from tests.tuner.test_errors_dataset import FATAL, _no_layout
from tests.tuner.test_errors_spaces import BAD_FILES
from tuner.cli import main

TINY_MODEL = [
    "--set=weights=none",
    "--set=backbone=resnet18",
    "--set=crop_size=64",
    "--set=device=cpu",
    "--set=bn_calibration=off",
]
SPACE_COMMANDS = ("spaces show", "search", "submit")


@dataclass
class Place:
    """What a case runs against: a clean dataset copy, a storage with two experiments, a
    regular file to put folders under, and a scratch folder."""

    tree: Tree
    storage: Path
    blocker: Path
    tmp: Path


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return make_tree(tmp_path_factory.mktemp("template") / "data", frames=6)


def _place(tree: Tree, tmp_path: Path) -> Place:
    storage = write_earlier_experiments(tmp_path / "results")
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    return Place(tree, storage, blocker, tmp_path)


@pytest.fixture
def place(template: Tree, tmp_path: Path) -> Iterator[Place]:
    """A place whose dataset is the module's template (a copy for each of a hundred cases took
    most of this module's time): the case must leave it as it was, which is checked."""
    before = _files(template.root)
    yield _place(template, tmp_path)
    assert _files(template.root) == before, "the case changed the shared dataset"


@pytest.fixture
def own_place(template: Tree, tmp_path: Path) -> Place:
    """A place with a dataset of its own, for a case that plants a defect or removes it."""
    root = tmp_path / "data"
    shutil.copytree(template.root, root)
    return _place(Tree(root, template.layout, list(template.videos)), tmp_path)


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def assert_one_error_line(code: int, out: str, err: str, expected_code: int, needle: str) -> None:
    assert "Traceback" not in out + err, out + err
    errors = [line for line in err.splitlines() if line.startswith("egotune: error:")]
    assert len(errors) == 1, err
    others = [line for line in err.splitlines() if line and line not in errors]
    assert all(line.startswith(("egotune: warning:", "egotune: note:")) for line in others), err
    assert needle in errors[0], errors[0]
    assert code == expected_code, err


def experiments(storage: Path) -> list[str]:
    """The experiment folders (``_dataset_checks`` and the like are records, not experiments)."""
    return sorted(p.name for p in storage.iterdir() if not p.name.startswith("_"))


def run(argv: list[str], capsys: pytest.CaptureFixture[str], code: int, needle: str) -> None:
    result = main(argv)
    captured = capsys.readouterr()
    assert_one_error_line(result, captured.out, captured.err, code, needle)


# -- the dataset: every fatal defect through every command that reads a dataset -----------------


def _dataset_commands(place: Place) -> dict[str, list[str]]:
    root, storage = str(place.tree.root), str(place.tmp / "fresh")
    out = str(place.tmp / "run")
    return {
        "data check": ["data", "check", root],
        "search": ["search", "demo", "--data", root, "--storage", storage],
        "demo": ["demo", "--data", root, "--storage", storage],
        "train": ["train", "--model", "ego_rnn", "--data", root, "--out", out, *TINY_MODEL],
    }


DATASET_CASES = [
    pytest.param(plant, command, id=f"{plant.__name__.strip('_')}-{command}")
    for plant in FATAL
    for command in ("data check", "search", "demo", "train")
    # demo writes its own dataset into a folder that holds none: not a bad input for demo
    if not (plant is _no_layout and command == "demo")
]


@pytest.mark.parametrize(("plant", "command"), DATASET_CASES)
def test_a_dataset_defect_is_one_line_for_every_command(plant, command, own_place, capsys):
    kind, culprit = plant(own_place.tree)
    run(_dataset_commands(own_place)[command], capsys, 1, f"{kind}: {culprit}")
    assert not (own_place.tmp / "run" / "checkpoints").exists()


@pytest.mark.parametrize("command", ["data check", "search", "train"])
def test_a_missing_dataset_folder_is_one_line_for_every_command(command, own_place, capsys):
    shutil.rmtree(own_place.tree.root)
    needle = "ROOT: no such directory" if command == "data check" else "--data"
    run(_dataset_commands(own_place)[command], capsys, 2, needle)


# -- search-space files and overrides, through spaces show, search and submit ------------------


def _space_command(command: str, space: str, place: Place, *flags: str) -> list[str]:
    data = str(place.tree.root)
    if command == "spaces show":
        return ["spaces", "show", space, *flags]
    if command == "search":
        return ["search", space, "--data", data, "--storage", str(place.storage), *flags]
    return ["submit", space, "--address", "http://127.0.0.1:9", "--data", data, *flags]


@pytest.mark.parametrize("command", SPACE_COMMANDS)
@pytest.mark.parametrize(("text", "key", "message"), BAD_FILES)
def test_a_bad_space_file_is_one_line_for_every_command(text, key, message, command, place, capsys):
    path = place.tmp / "space.yaml"
    path.write_text(text)
    needle = f"{path}: {key}: {message}" if key else f"{path}: {message}"
    run(_space_command(command, str(path), place), capsys, 2, needle)
    assert path.read_text() == text


SPACE_NAMES = [
    pytest.param("absent.yaml", "absent.yaml: no such file", id="missing file"),
    pytest.param("fig10_ms_classification_grd", "did you mean fig10", id="misspelt name"),
    pytest.param("latin1.yaml", "not UTF-8 text", id="not utf-8"),
]


@pytest.mark.parametrize("command", SPACE_COMMANDS)
@pytest.mark.parametrize(("name", "needle"), SPACE_NAMES)
def test_a_space_that_cannot_be_read_is_one_line_for_every_command(
    name, needle, command, place, capsys
):
    (place.tmp / "latin1.yaml").write_bytes(
        "fixed: {model: ego_rnn}\n# caf\xe9\n".encode("latin-1")
    )
    space = str(place.tmp / name) if name.endswith(".yaml") else name
    run(_space_command(command, space, place), capsys, 2, needle)


OVERRIDES = [
    pytest.param(["--set", "lrr=1e-3"], "--set lrr: unknown key (did you mean lr?)", id="key"),
    pytest.param(["--set", "lr=abc"], "--set lr:", id="value"),
    pytest.param(["--set", "milestones=[3"], "--set milestones: cannot parse", id="unparsable"),
    pytest.param(["--gpus-per-trial", "1.5"], "resources.gpus: a fraction must be <= 1", id="gpu"),
]


@pytest.mark.parametrize("command", SPACE_COMMANDS)
@pytest.mark.parametrize(("flags", "needle"), OVERRIDES)
def test_a_bad_override_is_one_line_for_every_command(flags, needle, command, place, capsys):
    run(_space_command(command, "demo", place, *flags), capsys, 2, needle)


@pytest.mark.parametrize(
    ("flags", "needle"),
    [(["--set", "lrr=1e-3"], "--set lrr: unknown key"), (["--set", "lr=abc"], "--set lr:")],
    ids=["key", "value"],
)
def test_a_bad_override_of_train_is_one_line(flags, needle, place, capsys):
    argv = ["train", "--model", "ego_rnn", "--data", str(place.tree.root)]
    run([*argv, "--out", str(place.tmp / "run"), *flags], capsys, 2, needle)


# -- command line, storage and cluster ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cli_cases() -> list[object]:
    """(argv builder, exit status, needle) for the catalogue's command-line section."""

    def search(place: Place, *flags: str) -> list[str]:
        data = str(place.tree.root)
        return ["search", "demo", "--data", data, "--storage", str(place.storage), *flags]

    def demo(place: Place, *flags: str) -> list[str]:
        return ["demo", "--data", str(place.tree.root), "--storage", str(place.storage), *flags]

    def train(place: Place, out: Path, *flags: str) -> list[str]:
        argv = ["train", "--model", "ego_rnn", "--data", str(place.tree.root), "--out", str(out)]
        return [*argv, *TINY_MODEL, *flags]

    def held_run(place: Place) -> list[str]:
        out = place.tmp / "held"
        out.mkdir()
        (out / "epochs.jsonl").write_text('{"epoch": 1}\n')
        return train(place, out)

    def corrupt_checkpoint(place: Place) -> list[str]:
        out = place.tmp / "corrupt"
        (out / "checkpoints").mkdir(parents=True)
        (out / "checkpoints" / "state-e00001.pt").write_bytes(b"PK\x03\x04 truncated")
        return train(place, out, "--resume")

    def damaged_record(place: Place) -> list[str]:
        (place.storage / "alpha" / "experiment.json").write_text("{\n")
        return ["search", "--resume", "alpha", "--storage", str(place.storage)]

    def unwritable(place: Place) -> Path:
        return place.blocker / "results"

    def existing(place: Place) -> Path:
        (place.tmp / "synth" / "GTEA61").mkdir(parents=True)
        return place.tmp / "synth"

    Builder = Callable[[Place], list[str]]
    cases: list[tuple[str, Builder, int, str]] = [
        ("search-storage", lambda p: [*search(p)[:-2], "--storage", str(unwritable(p))], 2,
         "not writable (Not a directory)"),
        ("demo-storage", lambda p: ["demo", "--storage", str(unwritable(p))], 2,
         "--storage"),
        ("train-out", lambda p: train(p, p.blocker / "run"), 2, "not writable (Not a directory)"),
        ("train-held-run", held_run, 2, "already holds a run"),
        ("train-corrupt-checkpoint", corrupt_checkpoint, 1, "state-e00001.pt: cannot read"),
        ("search-unreachable", lambda p: search(p, "--address", f"127.0.0.1:{_free_port()}"), 1,
         "no Ray head answers there"),
        ("submit-unreachable", lambda p: ["submit", "demo", "--data", "/x", "--address",
         f"http://127.0.0.1:{_free_port()}"], 1, "no Ray Jobs API answers there"),
        ("search-malformed-address", lambda p: search(p, "--address", "head:port"), 2,
         "expected HOST:PORT"),
        ("submit-malformed-address", lambda p: ["submit", "demo", "--data", "/x", "--address",
         "ftp://head"], 2, "expected the dashboard URL"),
        ("search-resume-unknown", lambda p: ["search", "--resume", "gamma", "--storage",
         str(p.storage)], 2, "experiments in"),
        ("search-resume-damaged", damaged_record, 1, "experiment.json is unreadable"),
        ("search-name-taken", lambda p: search(p, "--name", "alpha"), 2, "already exists"),
        ("demo-name-taken", lambda p: demo(p, "--name", "alpha"), 2, "already exists"),
        ("results-unknown", lambda p: ["results", "top", "gamma", "--storage", str(p.storage)], 1,
         "experiment 'gamma'"),
        ("results-pivot-unknown", lambda p: ["results", "pivot", "gamma", "--rows", "lr",
         "--storage", str(p.storage)], 1, "experiment 'gamma'"),
        ("results-curves-unknown", lambda p: ["results", "curves", "gamma", "--out",
         str(p.tmp / "c.png"), "--storage", str(p.storage)], 1, "experiment 'gamma'"),
        ("results-export-unknown", lambda p: ["results", "export", "gamma", "--format", "csv",
         "--out", str(p.tmp / "x.csv"), "--storage", str(p.storage)], 1, "experiment 'gamma'"),
        ("results-list-missing-storage", lambda p: ["results", "list", "--storage",
         str(unwritable(p))], 1, "no such folder"),
        ("replay-unknown", lambda p: ["replay", "gamma", "--scheduler", "asha", "--storage",
         str(p.storage)], 1, "experiment 'gamma'"),
        ("bench-unknown", lambda p: ["bench", "nope"], 2, "unknown benchmark 'nope'"),
        ("bench-list-flag", lambda p: ["bench", "list", "--csv"], 2, "only --json"),
        ("synth-existing", lambda p: ["data", "synth", str(existing(p)), "--classes", "3"], 1,
         "already exists"),
        ("synth-unwritable", lambda p: ["data", "synth", str(unwritable(p)), "--classes", "3"], 1,
         "cannot write the dataset there (Not a directory)"),
        ("synth-classes", lambda p: ["data", "synth", str(p.tmp / "s"), "--classes", "99"], 2,
         "classes: an integer from 3 to 61"),
        ("synth-preset-and-classes", lambda p: ["data", "synth", str(p.tmp / "s"),
         "--like-gtea61", "--classes", "8"], 2, "--classes: --like-gtea61 sets"),
    ]  # fmt: skip
    return [pytest.param(build, code, needle, id=name) for name, build, code, needle in cases]


@pytest.mark.parametrize(("build", "code", "needle"), _cli_cases())
def test_a_bad_flag_or_place_is_one_line(build, code, needle, place, capsys):
    before = place.blocker.read_text()
    run(build(place), capsys, code, needle)
    assert place.blocker.read_text() == before
    assert experiments(place.storage) == ["alpha", "beta"]


@pytest.mark.parametrize(
    ("flag", "needle"),
    [("--cpus-per-trial", "--cpus-per-trial 64 (lower it"), ("--gpus-per-trial", "--gpus-per-")],
)
def test_a_request_no_node_can_hold_is_one_line(flag, needle, place, local_ray, capsys):
    value = "64" if flag == "--cpus-per-trial" else "1"
    data = str(place.tree.root)
    argv = ["search", "demo", "--data", data, "--storage", str(place.storage), flag, value]
    run(argv, capsys, 2, needle)


# -- ImageNet weights that cannot be had ---------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "search"])
def test_imagenet_weights_that_cannot_be_downloaded_are_one_line(command, place):
    """A fresh interpreter with an empty torch hub cache and every download refused (a proxy
    that is not there), as on an offline machine."""
    root = str(place.tree.root)
    if command == "train":
        out = str(place.tmp / "run")
        args = ["train", "--model", "ego_rnn", "--stage", "1", "--data", root, "--out", out]
        args += ["--set", "backbone=resnet18", "--set", "crop_size=64", "--set", "device=cpu"]
    else:
        args = ["search", "demo", "--data", root, "--storage", str(place.storage)]
        args += ["--set", "weights=imagenet"]
    refused = f"http://127.0.0.1:{_free_port()}"
    env = {
        **os.environ,
        "TORCH_HOME": str(place.tmp / "torch"),
        "HTTPS_PROXY": refused,
        "https_proxy": refused,
        "HTTP_PROXY": refused,
        "http_proxy": refused,
    }
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    done = subprocess.run(
        [sys.executable, "-m", "tuner.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert_one_error_line(done.returncode, done.stdout, done.stderr, 1, "ImageNet weights for")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "resnet" in done.stderr and "weights=PATH" in done.stderr
    assert not (place.tmp / "run" / "checkpoints").exists()
    assert experiments(place.storage) == ["alpha", "beta"]
