import os
import shutil

import numpy as np
import pytest

from data_pipeline import (
    QUARANTINE,
    ClipDataset,
    DatasetWarning,
    check_dataset,
    discover,
    fix_dataset,
)
from tests.gtea_trees import Tree, make_tree, write_image

# --- repairable problems: each planter returns the path the report must name -------------------


def _hidden_user_level(tree: Tree):
    path = tree.root / "processed_frames2" / "S1" / ".DS_Store"
    path.write_bytes(b"\x00\x00\x00\x01Bud1")
    return "hidden_file", path


def _hidden_class_level(tree: Tree):
    path = tree.root / "flow_x_processed" / "S2" / "open_jam" / ".DS_Store"
    path.write_bytes(b"\x00\x00\x00\x01Bud1")
    return "hidden_file", path


def _hidden_instance_level(tree: Tree):
    path = tree.folder("rgb", "S3", "close_jam", "1").parent / ".DS_Store"
    path.write_bytes(b"\x00\x00\x00\x01Bud1")
    return "hidden_file", path


def _hidden_folder(tree: Tree):
    path = tree.root / "processed_frames2" / "S4" / ".thumbnails"
    (path / "inner").mkdir(parents=True)
    (path / "inner" / "x.png").write_bytes(b"thumb")
    return "hidden_file", path


def _duplicate_frame(tree: Tree):
    source = tree.frame("rgb", "S1", "open_jam", "1", 1)
    path = source.with_name("rgb0001 (1).png")
    shutil.copyfile(source, path)
    return "duplicate_file", path


def _duplicate_flow(tree: Tree):
    source = tree.frame("flow_y", "S4", "close_jam", "1", 5)
    path = source.with_name("flow_y_00005 copy.png")
    shutil.copyfile(source, path)
    return "duplicate_file", path


def _missing_first_map(tree: Tree):
    path = tree.frame("mmaps", "S2", "pour_coffee,spoon,cup", "1", 1)
    path.unlink()
    return "missing_mmap", path


REPAIRABLE = [
    _hidden_user_level,
    _hidden_class_level,
    _hidden_instance_level,
    _hidden_folder,
    _duplicate_frame,
    _duplicate_flow,
    _missing_first_map,
]


@pytest.mark.parametrize("plant", REPAIRABLE)
def test_repairable_problem_is_reported_with_its_path(tree, plant):
    kind, path = plant(tree)
    report = check_dataset(tree.root)
    assert report.usable
    assert [(p.kind, p.path) for p in report.problems] == [(kind, path)]
    assert report.problems[0].repair


@pytest.mark.parametrize("plant", REPAIRABLE)
def test_fix_repairs_the_problem_and_changes_nothing_else(tree, plant):
    before = tree.files()
    kind, path = plant(tree)
    planted = tree.files()
    repaired = fix_dataset(check_dataset(tree.root))
    assert [(p.kind, p.path) for p in repaired] == [(kind, path)]
    after = check_dataset(tree.root)
    assert after.problems == []
    assert after.usable
    current = tree.files()
    outside = {p: b for p, b in current.items() if QUARANTINE not in p.parts}
    if kind == "missing_mmap":
        assert outside == {**before, path: planted[tree.frame("mmaps", *_video(path), 2)]}
    else:
        assert outside == before


def _video(map_path):
    instance_dir = map_path.parent.parent
    return instance_dir.parent.parent.name, instance_dir.parent.name, instance_dir.name


def test_fix_moves_duplicates_into_the_quarantine_instead_of_deleting(tree):
    _, path = _duplicate_frame(tree)
    content = path.read_bytes()
    fix_dataset(check_dataset(tree.root))
    moved = tree.root / QUARANTINE / path.relative_to(tree.root)
    assert moved.read_bytes() == content
    assert not path.exists()


def test_check_without_fix_changes_nothing(tree):
    for plant in REPAIRABLE:
        plant(tree)
    planted = tree.files()
    report = check_dataset(tree.root)
    assert len(report.problems) == len(REPAIRABLE)
    assert tree.files() == planted


def test_missing_map_borrows_the_nearest_existing_map_forward_first(tree):
    for k in (1, 4, 6, 7):
        tree.frame("mmaps", "S1", "close_jam", "1", k).unlink()
    report = check_dataset(tree.root)
    sources = {p.path.name: p.source.name for p in report.problems}
    assert sources == {
        "map0001.png": "map0002.png",  # only forward
        "map0004.png": "map0005.png",  # tie between 3 and 5: forward first
        "map0006.png": "map0005.png",  # nearest is backward
        "map0007.png": "map0008.png",
    }
    with pytest.warns(DatasetWarning, match="4 missing_mmap"):
        video = discover(tree.root).videos[0]
    assert [p.name[3:7] for p in video.mmaps] == [
        "0002",
        "0002",
        "0003",
        "0005",
        "0005",
        "0005",
        "0008",
        "0008",
    ]


# --- fatal problems ------------------------------------------------------------------------------


def _no_users(tree: Tree):
    top = tree.root / "processed_frames2"
    shutil.rmtree(top)
    top.mkdir()
    return "no_users", top


def _truncated_png(tree: Tree):
    path = tree.frame("rgb", "S2", "open_jam", "1", 3)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return "undecodable_image", path


def _zero_byte_image(tree: Tree):
    path = tree.frame("flow_x", "S3", "close_jam", "1", 2)
    path.write_bytes(b"")
    return "undecodable_image", path


def _empty_video(tree: Tree):
    for modality in ("rgb", "mmaps", "flow_x", "flow_y"):
        for file in tree.folder(modality, "S1", "open_jam", "1").iterdir():
            file.unlink()
    return "empty_video", tree.root / "processed_frames2" / "S1" / "open_jam" / "1"


def _count_mismatch(tree: Tree):
    tree.frame("flow_y", "S4", "open_jam", "1", 8).unlink()
    return "count_mismatch", tree.root / "processed_frames2" / "S4" / "open_jam" / "1"


def _missing_modality(tree: Tree):
    folder = tree.folder("flow_x", "S2", "close_jam", "1")
    shutil.rmtree(folder)
    return "missing_modality", folder


def _unknown_user(tree: Tree):
    folder = tree.root / "flow_y_processed" / "user5"
    folder.mkdir()
    return "unknown_user", folder


def _stray_file(tree: Tree):
    path = tree.folder("rgb", "S1", "close_jam", "1") / "notes.txt"
    path.write_text("frames checked")
    return "unexpected_entry", path


FATAL = [
    _no_users,
    _truncated_png,
    _zero_byte_image,
    _empty_video,
    _count_mismatch,
    _missing_modality,
    _unknown_user,
    _stray_file,
]


@pytest.mark.parametrize("plant", FATAL)
def test_fatal_problem_is_reported_with_its_path(tree, plant):
    kind, path = plant(tree)
    report = check_dataset(tree.root, workers=2)
    assert not report.usable
    assert (kind, path) in [(f.kind, f.path) for f in report.fatal]
    assert all(f.message for f in report.fatal)


def test_truncated_png_is_found_only_by_decoding(tree):
    _truncated_png(tree)
    assert check_dataset(tree.root, decode=False).usable
    assert not check_dataset(tree.root, decode=True).usable


def test_missing_layout_is_fatal(tmp_path):
    report = check_dataset(tmp_path)
    assert report.layout is None
    assert [f.kind for f in report.fatal] == ["unknown_layout"]


def test_grayscale_rgb_frame_is_not_a_problem_and_loads_as_three_channels(tree):
    path = tree.frame("rgb", "S1", "close_jam", "1", 1)
    write_image(path, np.full((24, 32), 90, dtype=np.uint8))
    report = check_dataset(tree.root)
    assert report.usable
    assert report.problems == []
    index = discover(tree.root)
    item = ClipDataset(index.videos[:1], index.classes, frames=8, train=False, crop_size=16)[0]
    assert item["rgb"].shape == (8, 3, 16, 16)


def test_symlink_loop_is_reported_without_hanging(tree):
    user = tree.root / "processed_frames2" / "S1"
    os.symlink(user, user / "close_jam" / "loop")
    report = check_dataset(tree.root)
    assert ("symlink_loop", user / "close_jam" / "loop") in [(f.kind, f.path) for f in report.fatal]


def test_report_counts_users_classes_and_frames(tmp_path):
    make_tree(tmp_path, users=("S1", "S2"), classes=("take_jam", "open_tea"), frames=(5, 9, 20))
    summary = check_dataset(tmp_path).to_dict()
    assert summary == {
        "layout": "course",
        "users": {"S1": 2, "S2": 2},
        "classes": 2,
        "class_names": ["open_tea", "take_jam"],
        "videos": 4,
        "frames": {"min": 5, "median": 7.0, "max": 20},
        "problems": [],
        "fatal": [],
    }
