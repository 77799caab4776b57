"""The synthetic GTEA61 behaves like the real one where it matters for tuning: training crops keep
the action in view, open/close pairs hold the same frames, users differ, and the GTEA61-shaped
preset has the real counts and video lengths. (Accuracies on it are measured by
``egotune bench synth_realism``, not asserted here.)"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_pipeline import (
    CORNERS,
    GTEA61_CLASSES,
    SCALES,
    CropParams,
    corner_box,
    discover,
    rgb_frame_numbers,
    synthesize,
)
from data_pipeline.synth import GTEA61_SHAPE, USERS, _specs, gtea61_counts
from data_pipeline.synth_scene import OBJECTS, build_scene, user_style

SIZE = (130, 73)  # the demo's frames: what 64-pixel crops are cut from
pytestmark = pytest.mark.filterwarnings("ignore:.*tolerating")  # the planted defects


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    summary = synthesize(
        tmp_path_factory.mktemp("realism"), classes=8, videos_per_class=2, size=SIZE, seed=2
    )
    return summary.root


def _visible(mask: np.ndarray, params: CropParams) -> float:
    height, width = mask.shape
    top, left, side = corner_box(height, width, params)
    return float(mask[top : top + side, left : left + side].sum() / mask.sum())


def test_training_crops_keep_the_moving_hands_and_object_in_view(dataset: Path) -> None:
    """Over the 20 MultiScaleCornerCrop choices of every sampled frame, the moving region (the
    motion map) is almost never cut out entirely; the earlier generator's lone object was cut
    out of about a third of the training crops."""
    index = discover(dataset)
    shares = []
    for video in index.videos:
        for k in rgb_frame_numbers(video.n_frames, 4):
            mask = np.asarray(Image.open(video.mmaps[k - 1])) > 0
            shares += [_visible(mask, CropParams(False, s, c)) for s in SCALES for c in CORNERS]
    shares_array = np.asarray(shares)
    assert (shares_array == 0).mean() <= 0.02
    assert (shares_array < 0.25).mean() <= 0.25


def test_the_class_object_is_rarely_cut_out_of_a_training_crop() -> None:
    """The object the class names (and the lid or spoon that moves), over every class at the
    real frame size: cut out of about one training crop in seven (the earlier generator's
    object: about one in three)."""
    width, height = 455, 256
    cut_out = total = 0
    for number in range(1, len(USERS) + 1):
        style = user_style(0, number)
        for k, name in enumerate(GTEA61_CLASSES[::3]):
            scene = build_scene(
                name, 20, (width, height), style, np.random.default_rng([number, k])
            )
            things = [p for p in scene.parts if p.look.shape not in ("hand", "arm")]
            held = things[-2:] if things[-1].look.shape in ("lid", "spoon") else things[-1:]
            for frame in rgb_frame_numbers(20, 4):
                boxes = [_box(part.states[frame - 1], part.half) for part in held]
                for s in SCALES:
                    for c in CORNERS:
                        top, left, side = corner_box(height, width, CropParams(False, s, c))
                        inside = sum(
                            _overlap(b, (left, top, left + side, top + side)) for b in boxes
                        )
                        cut_out += inside == 0
                        total += 1
    assert cut_out / total <= 0.15


def _box(state: np.ndarray, half: tuple[float, float]) -> tuple[float, float, float, float]:
    cx, cy, sx, sy, _ = state
    return (cx - half[0] * sx, cy - half[1] * sy, cx + half[0] * sx, cy + half[1] * sy)


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    return width * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def test_open_and_close_hold_the_same_frames_so_a_frame_average_cannot_tell_them_apart(
    dataset: Path,
) -> None:
    index = discover(dataset)
    videos = {video.name: video for video in index.videos}
    pairs = [
        (v, videos[v.name.replace("/open_", "/close_")])
        for v in index.videos
        if "/open_" in v.name and v.name.replace("/open_", "/close_") in videos
    ]
    assert len(pairs) >= 8
    for opened, closed in pairs:
        average = [
            np.mean([np.asarray(Image.open(p), dtype=float) for p in video.rgb], axis=0)
            for video in (opened, closed)
        ]
        assert np.array_equal(*average)
        first = np.asarray(Image.open(opened.rgb[0]), dtype=float)
        assert not np.array_equal(first, np.asarray(Image.open(closed.rgb[0]), dtype=float))


def test_users_see_their_own_table_light_and_hands() -> None:
    styles = [user_style(0, number) for number in range(1, 5)]
    assert len({s.table for s in styles}) == 4
    assert len({s.skin for s in styles}) == 4
    assert len({s.light for s in styles}) == 4


def test_objects_of_one_family_look_alike() -> None:
    """Jam looks more like ketchup (both red) than like sugar; jars share their outline."""

    def distance(a: str, b: str) -> float:
        return float(np.linalg.norm(np.subtract(OBJECTS[a].colour, OBJECTS[b].colour)))

    assert distance("jam", "ketchup") < distance("jam", "sugar") / 3
    assert distance("mustard", "cheese") < distance("mustard", "coffee") / 3
    assert {OBJECTS[o].shape for o in ("jam", "peanut", "honey", "chocolate")} == {"jar"}


# -- the GTEA61-shaped preset ---------------------------------------------------------------------


def test_gtea61_counts_have_the_real_shape() -> None:
    counts = gtea61_counts(0)
    assert {name for _, name in counts} == set(GTEA61_CLASSES)
    assert {user for user, _ in counts} == set(USERS)
    for user, total in GTEA61_SHAPE.items():
        assert sum(c for (u, _), c in counts.items() if u == user) == total
    assert sum(counts.values()) == 457
    assert min(counts.values()) == 1 and max(counts.values()) <= 7
    # instance folders 2..7 exist about as often as in the real archive (122, 51, 24, 8, 4, 4)
    at_least = {k: sum(c >= k for c in counts.values()) for k in range(2, 8)}
    assert 100 <= at_least[2] <= 140 and 35 <= at_least[3] <= 70 and at_least[5] >= 4
    per_class = [sum(c for (_, n), c in counts.items() if n == name) for name in GTEA61_CLASSES]
    assert min(per_class) == 4 and max(per_class) >= 14


def test_gtea61_video_lengths_are_skewed_like_the_real_ones(tmp_path: Path) -> None:
    specs = _specs(tmp_path, gtea61_counts(0), (64, 36), 0, None)
    lengths = sorted(spec.n_frames for spec in specs)
    assert len(lengths) == 457 and min(lengths) == 5 and max(lengths) <= 160
    assert 30 <= statistics.median(lengths) <= 38
    tenth, ninetieth = lengths[len(lengths) // 10], lengths[9 * len(lengths) // 10]
    assert 12 <= tenth <= 20 and 80 <= ninetieth <= 125  # real: 16 and 105
    # open/close twins share their draw, so their lengths
    lengths_by_draw: dict[tuple[int, ...], set[int]] = {}
    for spec in specs:
        lengths_by_draw.setdefault(spec.draw, set()).add(spec.n_frames)
    assert sum(spec.backwards for spec in specs) > 30
    assert all(len(found) == 1 for found in lengths_by_draw.values())
