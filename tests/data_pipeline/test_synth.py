import itertools

import numpy as np
import pytest
from PIL import Image

from data_pipeline import (
    GTEA61_CLASSES,
    DatasetError,
    check_dataset,
    choose_classes,
    discover,
    synthesize,
)


def _pixels(path):
    return np.asarray(Image.open(path))


def test_synthetic_dataset_is_a_clean_course_layout_except_the_planted_defects(synth):
    report = check_dataset(synth.root)
    assert report.usable
    assert report.layout == "course"
    assert report.users == {"S1": 4, "S2": 4, "S3": 4, "S4": 4}
    assert report.class_names == synth.class_names
    planted = {("hidden_file", p) for p in synth.hidden_files}
    planted |= {("missing_mmap", p) for p in synth.missing_mmaps}
    assert {(p.kind, p.path) for p in report.problems} == planted
    assert synth.missing_mmaps and synth.hidden_files


def test_synthetic_hidden_files_sit_at_user_class_and_instance_level(synth):
    depths = {len(p.relative_to(synth.root).parts) for p in synth.hidden_files}
    assert {3, 4, 5} <= depths  # processed_frames2/S1/.DS_Store is 3 parts deep


def test_synthetic_frames_have_the_real_modes_and_size(synth):
    video = discover_quietly(synth.root).videos[0]
    assert Image.open(video.rgb[0]).mode == "RGB"
    assert Image.open(video.rgb[0]).size == (64, 36)
    for path in (video.flow_x[0], video.flow_y[0], video.mmaps[-1]):
        assert Image.open(path).mode == "L"
    assert set(np.unique(_pixels(video.mmaps[-1]))) == {0, 255}


def discover_quietly(root):
    with pytest.warns(UserWarning):
        return discover(root)


def test_frame_counts_vary_and_include_a_five_frame_video(synth):
    counts = [v.n_frames for v in discover_quietly(synth.root).videos]
    assert min(counts) == 5
    assert max(counts) <= 24
    assert len(set(counts)) > 3


def test_close_is_open_played_backwards(synth):
    index = discover_quietly(synth.root)
    videos = {v.name: v for v in index.videos}
    for user in ("S1", "S2", "S3", "S4"):
        opened, closed = videos[f"{user}/open_coffee/1"], videos[f"{user}/close_coffee/1"]
        assert opened.n_frames == closed.n_frames
        assert [p.read_bytes() for p in opened.rgb] == [p.read_bytes() for p in closed.rgb[::-1]]
        n = opened.n_frames
        # Compare the maps that exist on disk (a planted defect may borrow a neighbour's map).
        pairs = [
            (opened.mmaps[i], closed.mmaps[n - 1 - i])
            for i in range(n)
            if opened.mmaps[i].name == f"map{i + 1:04d}.png"
            and closed.mmaps[n - 1 - i].name == f"map{n - i:04d}.png"
        ]
        assert len(pairs) >= n - 2
        assert all(np.array_equal(_pixels(a), _pixels(b)) for a, b in pairs)


def test_flow_holds_the_motion_of_the_moving_parts_with_the_camera_removed(synth):
    index = discover_quietly(synth.root)
    videos = {v.name: v for v in index.videos}
    opened, closed = videos["S2/open_coffee/1"], videos["S2/close_coffee/1"]
    for video, sign in ((opened, -1), (closed, 1)):  # the lid rises on open, sinks on close
        vertical = 0
        for k in range(video.n_frames):
            if video.mmaps[k].name != f"map{k + 1:04d}.png":
                continue  # a planted defect borrows a neighbour's map
            mask = _pixels(video.mmaps[k]) > 0
            flow_y = _pixels(video.flow_y[k]).astype(int) - 128
            vertical += flow_y[mask].sum()
            assert np.abs(flow_y[~mask]).max() <= 1  # still pixels: 128 +- 1 despite the shake
        assert np.sign(vertical) == sign
    # The camera shakes: the RGB background (a corner the action never reaches) moves by more
    # than the sensor noise that changes every frame.
    corners = [_pixels(p)[:6, :6].astype(int) for p in opened.rgb]
    steps = [np.abs(a - b).mean() for a, b in itertools.pairwise(corners)]
    assert max(steps) > 2 * np.median(steps)


def test_generation_is_byte_identical_for_a_seed(tmp_path):
    first = synthesize(tmp_path / "a", classes=3, videos_per_class=1, size=(48, 27), seed=5)
    second = synthesize(tmp_path / "b", classes=3, videos_per_class=1, size=(48, 27), seed=5)
    other = synthesize(tmp_path / "c", classes=3, videos_per_class=1, size=(48, 27), seed=6)

    def files(root):
        return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    assert files(first.root) == files(second.root)
    assert files(first.root) != files(other.root)


def test_existing_destination_is_refused(synth):
    with pytest.raises(DatasetError, match="already exists"):
        synthesize(synth.root.parent, classes=3)


@pytest.mark.parametrize("n", range(3, 62))
def test_class_choice_has_open_close_pairs_and_comma_names(n):
    names = choose_classes(n)
    assert len(names) == len(set(names)) == n
    assert set(names) <= set(GTEA61_CLASSES)
    assert list(names) == sorted(names)
    assert any("," in name for name in names)
    for name in names:
        verb, obj = name.split("_", 1)
        twin = {"open": f"close_{obj}", "close": f"open_{obj}"}.get(verb)
        if twin in GTEA61_CLASSES:
            assert twin in names


def test_default_choice_covers_every_verb():
    verbs = {name.split("_", 1)[0] for name in choose_classes(12)}
    assert verbs == {n.split("_", 1)[0] for n in GTEA61_CLASSES}


@pytest.mark.parametrize("n", [2, 62])
def test_class_count_outside_three_to_sixty_one_is_refused(n):
    with pytest.raises(ValueError, match=r"^classes"):
        choose_classes(n)
