import pytest

from data_pipeline import SynthSummary, synthesize
from tests.gtea_trees import Tree, make_tree


@pytest.fixture
def tree(tmp_path) -> Tree:
    """Course layout: 4 users x 3 classes x 1 video of 8 frames, 32x24 pixels."""
    return make_tree(tmp_path / "data")


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> SynthSummary:
    """A small synthetic GTEA61 (4 classes, one video per class and user, 64x36), read-only."""
    root = tmp_path_factory.mktemp("synth")
    return synthesize(root, classes=4, videos_per_class=1, size=(64, 36), seed=3, workers=2)
