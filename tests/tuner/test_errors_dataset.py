"""Every dataset defect through the real CLI: ``data check`` names it, ``search`` and ``train``
refuse the dataset before any Ray or training work, each with one line on stderr."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from data_pipeline import ClipDataset, discover
from tests.console import error_line
from tests.gtea_trees import Tree, make_tree, write_image
from tuner.cli import main


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return make_tree(tmp_path_factory.mktemp("template") / "data", frames=6)


@pytest.fixture
def tree(template: Tree, tmp_path: Path) -> Tree:
    """A fresh copy of the module's course-layout tree (4 users, 3 classes, 6 frames)."""
    root = tmp_path / "data"
    shutil.copytree(template.root, root)
    return Tree(root, template.layout, list(template.videos))


# -- planted defects: each returns the kind and the path the error must name --------------------

Plant = Callable[[Tree], tuple[str, Path]]


def _no_layout(tree: Tree) -> tuple[str, Path]:
    for folder in list(tree.root.iterdir()):
        shutil.rmtree(folder)
    return "unknown_layout", tree.root


def _no_users(tree: Tree) -> tuple[str, Path]:
    top = tree.root / "flow_x_processed"
    shutil.rmtree(top)
    top.mkdir()
    return "no_users", top


def _unknown_user(tree: Tree) -> tuple[str, Path]:
    folder = tree.root / "processed_frames2" / "tmp"
    folder.mkdir()
    return "unknown_user", folder


def _user_in_one_modality_only(tree: Tree) -> tuple[str, Path]:
    shutil.copytree(tree.root / "processed_frames2" / "S1", tree.root / "processed_frames2" / "S9")
    return "missing_modality", tree.folder("flow_x", "S9", "close_jam", "1")


def _flow_without_rgb(tree: Tree) -> tuple[str, Path]:
    for modality in ("flow_x", "flow_y"):
        source = tree.folder(modality, "S1", "open_jam", "1")
        shutil.copytree(source, source.with_name("2"))
    return "missing_modality", tree.folder("rgb", "S1", "open_jam", "2")


def _missing_flow_folder(tree: Tree) -> tuple[str, Path]:
    folder = tree.folder("flow_y", "S3", "close_jam", "1")
    shutil.rmtree(folder)
    return "missing_modality", folder


def _empty_video(tree: Tree) -> tuple[str, Path]:
    for modality in ("rgb", "mmaps", "flow_x", "flow_y"):
        for file in tree.folder(modality, "S2", "open_jam", "1").iterdir():
            file.unlink()
    return "empty_video", tree.root / "processed_frames2" / "S2" / "open_jam" / "1"


def _count_mismatch(tree: Tree) -> tuple[str, Path]:
    tree.frame("flow_x", "S4", "open_jam", "1", 6).unlink()
    return "count_mismatch", tree.root / "processed_frames2" / "S4" / "open_jam" / "1"


def _zero_byte_image(tree: Tree) -> tuple[str, Path]:
    path = tree.frame("rgb", "S2", "close_jam", "1", 5)
    path.write_bytes(b"")
    return "undecodable_image", path


def _truncated_image(tree: Tree) -> tuple[str, Path]:
    path = tree.frame("flow_y", "S1", "close_jam", "1", 4)
    path.write_bytes(path.read_bytes()[:80])
    return "undecodable_image", path


def _duplicate_number(tree: Tree) -> tuple[str, Path]:
    source = tree.frame("rgb", "S3", "open_jam", "1", 2)
    path = source.with_name("rgb2.png")
    shutil.copyfile(source, path)
    return "duplicate_number", path


def _stray_file(tree: Tree) -> tuple[str, Path]:
    path = tree.folder("flow_x", "S1", "close_jam", "1") / "notes.txt"
    path.write_text("checked")
    return "unexpected_entry", path


def _broken_link(tree: Tree) -> tuple[str, Path]:
    path = tree.folder("rgb", "S4", "close_jam", "1") / "rgb0007.png"
    os.symlink(tree.root / "absent.png", path)
    return "unexpected_entry", path


def _symlink_loop(tree: Tree) -> tuple[str, Path]:
    user = tree.root / "processed_frames2" / "S1"
    loop = user / "close_jam" / "loop"
    os.symlink(user, loop)
    return "symlink_loop", loop


FATAL: list[Plant] = [
    _no_layout,
    _no_users,
    _unknown_user,
    _user_in_one_modality_only,
    _flow_without_rgb,
    _missing_flow_folder,
    _empty_video,
    _count_mismatch,
    _zero_byte_image,
    _truncated_image,
    _duplicate_number,
    _stray_file,
    _broken_link,
    _symlink_loop,
]


@pytest.mark.parametrize("plant", FATAL)
def test_check_names_the_problem_and_search_refuses_it_before_ray(
    tree, plant, tmp_path, no_ray, capsys
):
    kind, culprit = plant(tree)
    before = tree.files()
    assert main(["data", "check", str(tree.root)]) == 1
    captured = capsys.readouterr()
    assert f"{kind}: {culprit}" in captured.out  # the full report lists it
    line = error_line(captured.err)
    assert f"{tree.root}: " in line and f"{kind}: {culprit}" in line and "by hand" in line
    assert tree.files() == before  # nothing changes without --fix

    storage = tmp_path / "results"
    code = main(["search", "demo", "--data", str(tree.root), "--storage", str(storage)])
    line = error_line(capsys.readouterr().err)
    assert code == 1 and no_ray == []
    assert f"{kind}: {culprit}" in line and f"egotune data check {tree.root}" in line
    assert [p.name for p in storage.iterdir()] == []  # no experiment folder, no check record


@pytest.mark.parametrize("plant", [_zero_byte_image, _truncated_image, _symlink_loop])
def test_train_refuses_the_dataset_before_the_first_epoch(tree, plant, tmp_path, capsys):
    kind, culprit = plant(tree)
    out = tmp_path / "run"
    code = main(["train", "--model", "ego_rnn", "--data", str(tree.root), "--out", str(out)])
    line = error_line(capsys.readouterr().err)
    assert code == 1
    assert kind in line and str(culprit) in line
    assert not (out / "epochs.jsonl").exists() and not (out / "checkpoints").exists()


def test_a_missing_data_folder_names_the_flag(tmp_path, no_ray, capsys):
    absent = tmp_path / "absent"
    assert main(["search", "demo", "--data", str(absent), "--storage", str(tmp_path / "r")]) == 2
    assert error_line(capsys.readouterr().err) == f"egotune: error: --data {absent}: no such folder"
    assert main(["train", "--model", "ego_rnn", "--data", str(absent), "--out", str(tmp_path)]) == 2
    assert f"--data {absent}: no such folder" in error_line(capsys.readouterr().err)
    assert main(["data", "check", str(absent)]) == 2
    assert f"ROOT: no such directory: {absent}" in error_line(capsys.readouterr().err)
    assert no_ray == []


def test_a_grayscale_rgb_frame_is_converted_to_three_channels(tree, tmp_path, no_ray, capsys):
    write_image(tree.frame("rgb", "S1", "close_jam", "1", 1), np.full((24, 32), 90, np.uint8))
    assert main(["data", "check", str(tree.root)]) == 0
    assert "fatal problems: 0" in capsys.readouterr().out
    main(["search", "demo", "--data", str(tree.root), "--storage", str(tmp_path / "r")])
    assert "pre-flight passed" in error_line(capsys.readouterr().err)
    index = discover(tree.root)
    item = ClipDataset(index.videos[:1], index.classes, frames=6, train=False, crop_size=16)[0]
    assert item["rgb"].shape == (6, 3, 16, 16)


def test_an_extra_complete_user_is_accepted_and_noted_as_unused(tree, tmp_path, no_ray, capsys):
    for top in ("processed_frames2", "flow_x_processed", "flow_y_processed"):
        shutil.copytree(tree.root / top / "S1", tree.root / top / "S9")
    assert main(["data", "check", str(tree.root)]) == 0
    assert "S4 3, S9 3" in capsys.readouterr().out
    main(["search", "demo", "--data", str(tree.root), "--storage", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert f"egotune: note: S9 of {tree.root} in neither train_users nor val_users" in err
    assert "pre-flight passed" in error_line(err)


def test_a_split_user_the_dataset_lacks_is_refused_before_ray(tmp_path, no_ray, capsys):
    tree = make_tree(tmp_path / "data", users=("S1", "S3", "S4"), classes=("a", "b"))
    code = main(["search", "demo", "--data", str(tree.root), "--storage", str(tmp_path / "r")])
    line = error_line(capsys.readouterr().err)
    assert code == 2 and no_ray == []
    assert "search_spaces/demo.yaml: val_users: S2 not in the dataset (users: S1, S3, S4)" in line
    code = main(["search", "demo", "--data", str(tree.root), "--storage", str(tmp_path / "r"),
                 "--set", "val_users=[S3]", "--set", "train_users=[S1,S9]"])  # fmt: skip
    assert code == 2 and "train_users: S9 not in the dataset" in capsys.readouterr().err
    assert no_ray == []


def test_the_frames_of_a_dataset_are_decoded_once_per_version(tree, tmp_path, no_ray, capsys):
    storage = tmp_path / "r"
    main(["search", "demo", "--data", str(tree.root), "--storage", str(storage)])
    (record,) = (storage / "_dataset_checks").iterdir()
    _, culprit = _truncated_image(tree)  # a new version of the dataset: checked again
    capsys.readouterr()
    assert main(["search", "demo", "--data", str(tree.root), "--storage", str(storage)]) == 1
    assert str(culprit) in error_line(capsys.readouterr().err)
    assert list((storage / "_dataset_checks").iterdir()) == [record]
    assert len(no_ray) == 1
