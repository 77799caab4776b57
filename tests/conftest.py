"""Fixtures shared by the whole suite: small synthetic GTEA61 trees and tiny configurations."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from data_pipeline import synthesize

SYNTH_CLASSES = 4


def pytest_configure(config: pytest.Config) -> None:
    """Decoded-frame stores of test runs go to a temporary folder, not the user's cache."""
    if "EGOTUNE_CACHE_DIR" not in os.environ:
        os.environ["EGOTUNE_CACHE_DIR"] = tempfile.mkdtemp(prefix="egotune-test-cache-")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic GTEA61 (course layout, real defects) small enough for CPU training tests."""
    summary = synthesize(
        tmp_path_factory.mktemp("gtea61"),
        classes=SYNTH_CLASSES,
        videos_per_class=1,
        size=(96, 64),
        seed=3,
    )
    return summary.root


def tiny_config_values(**overrides: object) -> dict[str, object]:
    """Settings of a tiny CPU run: ResNet-18 at 64 px, 3 frames, random weights."""
    values: dict[str, object] = {
        "backbone": "resnet18",
        "weights": "none",
        "crop_size": 64,
        "frames": 3,
        "batch_size": 4,
        "mem_size": 32,
        "num_workers": 0,
        "device": "cpu",
        "epochs": 2,
        "stage1": {"epochs": 1},
    }
    values.update(overrides)
    return values
