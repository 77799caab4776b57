"""Which frames a sample reads: the report's RGB clip rule and the flow-stack starts.

Frame numbers are 1-based positions in a video's frame list (frame ``k`` is the k-th file in
numeric order), as in the Ego-RNN loaders.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["flow_frame_numbers", "flow_starts", "rgb_frame_numbers"]


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")


def rgb_frame_numbers(n_frames: int, frames: int) -> list[int]:
    """``floor(linspace(1, N, T, endpoint=False))``: T frame numbers of a video of N frames.

    Deterministic (the same in training and evaluation); frames repeat when N < T, and the last
    ~N/T frames are never read. N=34, T=7 gives 1, 5, 10, 15, 19, 24, 29.
    """
    _check_positive("n_frames", n_frames)
    _check_positive("frames", frames)
    points = np.linspace(1, n_frames, frames, endpoint=False)
    return [math.floor(p) for p in points]


def flow_starts(
    n_frames: int,
    stack: int,
    *,
    train: bool,
    rng: np.random.Generator | None = None,
    segments: int = 1,
) -> list[int]:
    """First frame number of each flow stack of ``stack`` frames.

    Training draws one start uniformly from ``1 .. N - stack`` (inclusive) with ``rng``;
    evaluation takes the centre ``ceil((N - stack) / 2)``, or with ``segments > 1`` the starts
    ``floor(linspace(1, N - stack + 1, segments, endpoint=False))``. Starts are at least 1; a
    video with ``N <= stack`` frames starts at 1.
    """
    _check_positive("n_frames", n_frames)
    _check_positive("stack", stack)
    _check_positive("segments", segments)
    if train:
        if segments != 1:
            raise ValueError("segments: several flow segments are an evaluation option only")
        if rng is None:
            raise ValueError("rng: training draws the flow start from a generator")
        if n_frames <= stack:
            return [1]
        return [int(rng.integers(1, n_frames - stack, endpoint=True))]
    if segments == 1:
        return [max(1, math.ceil((n_frames - stack) / 2))]
    points = np.linspace(1, n_frames - stack + 1, segments, endpoint=False)
    return [max(1, math.floor(p)) for p in points]


def flow_frame_numbers(start: int, stack: int, n_frames: int) -> list[int]:
    """The ``stack`` frame numbers from ``start``; a video shorter than the stack repeats its
    last frame."""
    return [min(start + i, n_frames) for i in range(stack)]
