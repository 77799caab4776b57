"""The realism benchmark's summary: best, spread between configurations, range over seeds."""

from __future__ import annotations

import pandas as pd

from bench import synth_realism
from tuner.spaces import load_space


def test_the_space_repeats_one_configuration_of_its_grid_over_three_seeds() -> None:
    cells = load_space(str(synth_realism.SPACE)).expand()
    grid = [(c["lr"], c["weight_decay"]) for c in cells if c["seed"] == 0]
    assert len(grid) == len(set(grid)) == 6
    seeded = [
        c["seed"]
        for c in cells
        if (c["lr"], c["weight_decay"]) == tuple(synth_realism.SEEDED.values())
    ]
    assert sorted(seeded) == [0, 1, 2]


def test_summary_sets_the_spread_of_configurations_against_the_seeds() -> None:
    trials = pd.DataFrame(
        {
            "lr": [1e-4, 1e-4, 1e-3, 1e-3, 1e-2, 1e-2, 1e-3, 1e-3],
            "weight_decay": [1e-5, 1e-2] * 3 + [1e-5, 1e-5],
            "seed": [0] * 6 + [1, 2],
            "best_val_acc": [10.0, 9.0, 30.0, 28.0, 5.0, 4.0, 26.0, 33.0],
        }
    )
    summary = synth_realism.summarize(trials)
    assert summary["best"] == 33.0
    assert summary["config_spread"] == 26.0  # 30 - 4 at seed 0
    assert summary["seed_range"] == 7.0  # 26, 30, 33
    assert summary["seeds"] == {0: 30.0, 1: 26.0, 2: 33.0}
    assert summary["spread_exceeds_seeds"] and not summary["saturated"]
