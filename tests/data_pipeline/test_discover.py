import warnings

import pytest

from data_pipeline import (
    DatasetError,
    DatasetWarning,
    dataset_fingerprint,
    discover,
    leave_one_user_out,
    split_by_user,
)
from tests.gtea_trees import make_tree


def test_course_layout_lists_every_video_with_its_frames(tree):
    index = discover(tree.root)
    assert index.layout == "course"
    assert index.root == tree.root
    assert len(index.videos) == 12
    video = index.videos[0]
    assert video.name == "S1/close_jam/1"
    assert video.n_frames == 8
    assert video.rgb[2] == tree.frame("rgb", "S1", "close_jam", "1", 3)
    assert video.mmaps[2] == tree.frame("mmaps", "S1", "close_jam", "1", 3)
    assert video.flow_x[7] == tree.frame("flow_x", "S1", "close_jam", "1", 8)
    assert video.flow_y[0] == tree.frame("flow_y", "S1", "close_jam", "1", 1)


def test_original_layout_reads_zero_based_jpeg_frames_without_maps(tmp_path):
    tree = make_tree(tmp_path, layout="original", users=("S1", "S2"), frames=6)
    index = discover(tmp_path)
    assert index.layout == "original"
    video = index.videos[0]
    assert video.n_frames == 6
    assert video.rgb[0].name == "image_00000.jpg"
    assert video.flow_x[0].name == "flow_x_00001.jpg"
    assert video.mmaps == ()
    assert video.rgb == tuple(tree.frame("rgb", "S1", "close_jam", "1", k) for k in range(1, 7))


def test_root_may_be_the_parent_of_gtea61(tmp_path):
    make_tree(tmp_path / "GTEA61", users=("S1",))
    index = discover(tmp_path)
    assert index.root == tmp_path / "GTEA61"
    assert len(index.videos) == 3


def test_instances_sort_numerically_and_users_by_number(tmp_path):
    make_tree(tmp_path, users=("S10", "S2"), classes=("take_jam",), instances=11, frames=5)
    index = discover(tmp_path)
    assert index.users == ("S2", "S10")
    assert [v.instance for v in index.videos[:11]] == [str(i) for i in range(1, 12)]


def test_class_indices_are_global_sorted_names_with_commas(tmp_path):
    make_tree(tmp_path, users=("S1",), classes=("take_bread", "pour_honey,cup"), frames=5)
    make_tree(tmp_path, users=("S2",), classes=("pour_honey,bread", "close_jam"), frames=5)
    index = discover(tmp_path)
    assert index.classes == ("close_jam", "pour_honey,bread", "pour_honey,cup", "take_bread")
    labels = {v.name: index.label(v) for v in index.videos}
    assert labels == {
        "S1/pour_honey,cup/1": 2,
        "S1/take_bread/1": 3,
        "S2/close_jam/1": 0,
        "S2/pour_honey,bread/1": 1,
    }


def test_default_split_trains_on_s1_s3_s4_and_validates_on_s2(tree):
    train, val = split_by_user(discover(tree.root))
    assert {v.user for v in train} == {"S1", "S3", "S4"}
    assert {v.user for v in val} == {"S2"}
    assert len(train) == 9
    assert len(val) == 3


def test_leave_one_user_out_holds_out_each_user_once(tree):
    folds = leave_one_user_out(discover(tree.root))
    assert [held for held, _, _ in folds] == ["S1", "S2", "S3", "S4"]
    for held, train, val in folds:
        assert {v.user for v in val} == {held}
        assert held not in {v.user for v in train}
        assert len(train) + len(val) == 12


@pytest.mark.parametrize(
    ("train_users", "val_users", "field"),
    [
        (("S1", "S9"), ("S2",), "train_users"),
        (("S1",), ("S1",), "val_users"),
        ((), ("S2",), "train_users"),
    ],
)
def test_bad_user_splits_name_the_field(tree, train_users, val_users, field):
    with pytest.raises(ValueError, match=rf"^{field}"):
        split_by_user(discover(tree.root), train_users, val_users)


def test_fingerprint_is_stable_and_follows_the_files(tree):
    first = dataset_fingerprint(discover(tree.root))
    assert dataset_fingerprint(discover(tree.root)) == first
    tree.frame("rgb", "S3", "open_jam", "1", 4).write_bytes(b"\x89PNG not really")
    assert dataset_fingerprint(discover(tree.root)) != first


def test_discover_refuses_a_dataset_with_a_fatal_problem_naming_the_path(tree):
    broken = tree.frame("flow_y", "S2", "open_jam", "1", 3)
    broken.unlink()
    with pytest.raises(DatasetError, match="count_mismatch") as error:
        discover(tree.root)
    assert "S2/open_jam/1" in str(error.value)


def test_discover_tolerates_repairable_problems_with_one_warning(tree):
    (tree.root / "processed_frames2" / "S1" / ".DS_Store").write_bytes(b"x")
    (tree.root / "processed_frames2" / "S2" / "open_jam" / ".DS_Store").write_bytes(b"x")
    tree.frame("mmaps", "S1", "close_jam", "1", 1).unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = discover(tree.root)
    assert [w.category for w in caught] == [DatasetWarning]
    assert "2 hidden_file" in str(caught[0].message)
    assert len(index.videos) == 12


def test_missing_root_is_an_error():
    with pytest.raises(DatasetError, match="no such dataset folder"):
        discover("/nonexistent/gtea61")
