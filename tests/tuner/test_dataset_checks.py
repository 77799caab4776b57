"""A search decodes every frame once per dataset version, and again each frame changed since."""

from __future__ import annotations

import shutil

import pytest

import tuner.training.dataset_checks as checks
from data_pipeline import DatasetError, discover
from tuner.training.dataset_checks import verify_once


def test_a_frame_zeroed_at_its_old_size_is_caught_before_the_next_search(
    synthetic_root, tmp_path, monkeypatch
):
    root = shutil.copytree(synthetic_root, tmp_path / "GTEA61")
    storage = tmp_path / "results"
    verify_once(discover(root), storage)
    decoded: list[int] = []
    verify = checks.verify_frames
    monkeypatch.setattr(
        checks,
        "verify_frames",
        lambda index, only: decoded.append(len(only)) or verify(index, only=only),
    )
    verify_once(discover(root), storage)
    assert decoded == []  # nothing changed: nothing decoded again
    frame = discover(root).videos[0].rgb[1]
    size = frame.stat().st_size
    with frame.open("r+b") as inside:
        inside.write(bytes(size))  # zeroed, same size: the same fingerprint
    with pytest.raises(DatasetError, match=frame.name):
        verify_once(discover(root), storage)
    assert decoded == [1]  # only the changed frame was decoded
