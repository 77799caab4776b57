import math

import numpy as np
import pytest

from data_pipeline import flow_frame_numbers, flow_starts, rgb_frame_numbers


def _report_rule(n, t):
    return [math.floor(i) for i in np.linspace(1, n, t, endpoint=False)]


def test_rgb_frames_match_the_reports_example():
    assert rgb_frame_numbers(34, 7) == [1, 5, 10, 15, 19, 24, 29]


@pytest.mark.parametrize(
    ("n", "t", "expected"),
    [
        (16, 16, [1, *range(1, 16)]),
        (5, 7, [1, 1, 2, 2, 3, 3, 4]),
        (1, 3, [1, 1, 1]),
        (25, 5, [1, 5, 10, 15, 20]),
        (645, 25, _report_rule(645, 25)),
    ],
)
def test_rgb_frames_follow_the_linspace_rule_including_short_videos(n, t, expected):
    assert rgb_frame_numbers(n, t) == expected


@pytest.mark.parametrize("n", [5, 7, 16, 34, 49, 105, 646])
@pytest.mark.parametrize("t", [7, 16, 25])
def test_rgb_frames_stay_in_range_and_in_order(n, t):
    numbers = rgb_frame_numbers(n, t)
    assert numbers == _report_rule(n, t)
    assert numbers == sorted(numbers)
    assert numbers[0] >= 1
    assert numbers[-1] <= n


def test_training_flow_start_is_uniform_over_one_to_n_minus_stack():
    rng = np.random.default_rng(0)
    starts = {flow_starts(12, 5, train=True, rng=rng)[0] for _ in range(400)}
    assert starts == set(range(1, 8))


def test_short_video_flow_starts_at_one():
    rng = np.random.default_rng(0)
    assert flow_starts(5, 5, train=True, rng=rng) == [1]
    assert flow_starts(3, 5, train=False) == [1]


@pytest.mark.parametrize(("n", "expected"), [(34, 15), (6, 1), (5, 1), (10, 3), (11, 3)])
def test_evaluation_flow_start_is_the_centre(n, expected):
    assert flow_starts(n, 5, train=False) == [expected]


def test_multi_segment_starts_use_linspace_to_n_minus_stack_plus_one():
    assert flow_starts(34, 5, train=False, segments=5) == [1, 6, 12, 18, 24]
    assert flow_starts(5, 5, train=False, segments=3) == [1, 1, 1]


def test_training_needs_a_generator_and_a_single_segment():
    with pytest.raises(ValueError, match=r"^rng"):
        flow_starts(10, 5, train=True)
    with pytest.raises(ValueError, match=r"^segments"):
        flow_starts(10, 5, train=True, rng=np.random.default_rng(0), segments=2)


def test_flow_stack_past_the_end_repeats_the_last_frame():
    assert flow_frame_numbers(3, 5, 10) == [3, 4, 5, 6, 7]
    assert flow_frame_numbers(1, 5, 3) == [1, 2, 3, 3, 3]


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_frame_counts_must_be_positive_integers(bad):
    with pytest.raises(ValueError, match=r"^n_frames"):
        rgb_frame_numbers(bad, 7)
