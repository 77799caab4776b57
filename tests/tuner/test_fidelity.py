"""Fidelity schedules without Ray: the rungs of a space, the engine at a promotion, the FLOP
counts they are planned on, and the Pareto front's sweep."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from data_pipeline import discover
from tests.conftest import tiny_config_values
from tuner.cli import main
from tuner.errors import EgotuneError
from tuner.results import front_mask
from tuner.spaces import SpaceError, parse_space
from tuner.training.config import TrainConfig
from tuner.training.cost import check_rung_shapes, clip_flops
from tuner.training.engine import Trainer
from tuner.training.fidelity import FidelitySchedule, Rung

SCHEDULE = FidelitySchedule((Rung(1, 2, 32), Rung(2, 2, None)))


def space_doc(**scheduler: object) -> dict:
    return {
        "fixed": {"model": "ego_rnn", "stage": 1, "epochs": 6, "frames": 4, "crop_size": 64},
        "grid": {"lr": [1e-3, 1e-4]},
        "scheduler": {"algorithm": "asha", **scheduler},
    }


def test_rungs_set_asha_milestones_and_the_trials_schedule():
    space = parse_space(
        space_doc(rungs=[{"until": 2, "frames": 2, "crop_size": 32}, {"until": 4, "frames": 3}]),
        source="f.yaml",
    )
    rungs = space.scheduler.rungs
    assert rungs is not None and rungs.milestones == (2, 4)
    assert space.scheduler.grace_period == 2 and space.scheduler.max_t == 6
    assert [rungs.size_at(e, 4, 64) for e in range(1, 7)] == [
        (2, 32), (2, 32), (3, 64), (3, 64), (4, 64), (4, 64)
    ]  # fmt: skip
    assert rungs.segments(6, 4, 64) == [(1, 2, 2, 32), (3, 4, 3, 64), (5, 6, 4, 64)]
    assert space.scheduler.to_dict()["rungs"][0] == {"until": 2, "frames": 2, "crop_size": 32}


@pytest.mark.parametrize(
    ("scheduler", "where"),
    [
        ({"rungs": [{"until": 2, "frame": 2}]}, "scheduler.rungs[0].frame: unknown key"),
        ({"rungs": [{"frames": 2}]}, "scheduler.rungs[0]: missing until"),
        ({"rungs": [{"until": 3}, {"until": 3}]}, "scheduler.rungs[1].until: must be after"),
        ({"rungs": [{"until": 2, "crop_size": 0}]}, "scheduler.rungs[0].crop_size: expected"),
        ({"rungs": [{"until": 2}], "grace_period": 1}, "scheduler.grace_period: not with rungs"),
        ({"rungs": [{"until": 6}]}, "scheduler.rungs: the last rung ends at epoch 6"),
        ({"rungs": "2,4"}, "scheduler.rungs: expected a non-empty list"),
    ],
)
def test_malformed_rungs_name_the_key(scheduler, where):
    with pytest.raises(SpaceError) as caught:
        parse_space(space_doc(**scheduler), source="f.yaml")
    assert where in str(caught.value)


def test_rungs_are_for_asha_only():
    doc = space_doc(rungs=[{"until": 2}])
    doc["scheduler"]["algorithm"] = "grid"
    with pytest.raises(SpaceError, match=r"scheduler\.rungs: only used by asha"):
        parse_space(doc, source="f.yaml")


def test_a_crop_that_changes_the_ms_head_is_refused_and_one_that_keeps_it_passes():
    ms = TrainConfig.from_dict({"model": "ego_rnn_ms", "frames": 16, "weights": "none"})
    with pytest.raises(EgotuneError, match=r"crop_size 112 .* same map side \(193 to 224"):
        check_rung_shapes(ms, FidelitySchedule((Rung(4, 4, 112),)), 61)
    check_rung_shapes(ms, FidelitySchedule((Rung(4, 4, 193),)), 61)
    plain = TrainConfig.from_dict({"model": "ego_rnn", "frames": 16, "weights": "none"})
    check_rung_shapes(plain, FidelitySchedule((Rung(4, 4, 112),)), 61)  # no size-bound head


def test_flop_counts_follow_the_clip_and_ignore_what_does_not_compute():
    cfg = TrainConfig.from_dict(tiny_config_values(model="ego_rnn", stage=1, crop_size=64))
    full = clip_flops(cfg, 4)
    assert full.train > full.val > 0  # a step adds the backward pass
    # the convolutions scale with frames x pixels; the ConvLSTM and head barely change
    half = clip_flops(cfg, 4, frames=cfg.frames, crop_size=32)
    assert 0.2 < half.train / full.train < 0.3
    assert clip_flops(cfg, 4, frames=2).train < full.train
    assert clip_flops(cfg.replace(lr=0.5, seed=9, epochs=7), 4) == full


def test_a_promotion_rebuilds_the_clips_and_continues_weights_optimiser_and_schedule(
    synthetic_root,
):
    values = tiny_config_values(model="ego_rnn", stage=1, epochs=3, crop_size=48, lr=1e-3)
    values.pop("stage1")
    values["milestones"] = [2]
    cfg = TrainConfig.from_dict(values)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(cfg, discover(synthetic_root), fidelity=SCHEDULE)
        run = trainer.run()
        first = next(run)
        steps = trainer._train_stream.batches_per_epoch
        state = trainer.optimizer.state_dict()["state"]
        moments = {k: v["exp_avg"].clone() for k, v in state.items()}
        weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        assert (first.frames, first.crop_size) == (2, 32)
        batch = next(iter(trainer._train_stream.epoch(2)))
        assert tuple(batch["rgb"].shape[1:]) == (2, 3, 32, 32)  # still rung 1's clips

        second = next(run)  # promoted: rung 2's clips, at the trial's crop
        assert (second.frames, second.crop_size) == (2, 48)
        state = trainer.optimizer.state_dict()["state"]
        assert all(int(v["step"]) == 2 * steps for v in state.values())  # Adam went on
        assert any(not torch.equal(moments[k], state[k]["exp_avg"]) for k in moments)
        assert second.lr == first.lr  # milestone 2 acts after epoch 2
        third = next(run)
        assert (third.frames, third.crop_size) == (3, 48)
        assert math.isclose(third.lr, first.lr * cfg.stage_settings(1).gamma)
        assert third.flops > second.flops > first.flops
        trainer.close()
        # the weights epoch 2 started from are epoch 1's: a fresh run reproduces them exactly
        again = Trainer(cfg, discover(synthetic_root), fidelity=SCHEDULE)
        record = next(again.run())
        assert record.val_acc == first.val_acc and record.train_loss == first.train_loss
        assert all(torch.equal(weights[k], v) for k, v in again.model.state_dict().items())
        again.close()
    finally:
        torch.set_num_threads(threads)


def brute_force_front(cost: np.ndarray, value: np.ndarray) -> np.ndarray:
    out = np.zeros(len(cost), dtype=bool)
    for i in range(len(cost)):
        if np.isnan(cost[i]) or np.isnan(value[i]):
            continue
        dominated = False
        for j in range(len(cost)):
            if j == i or np.isnan(cost[j]) or np.isnan(value[j]):
                continue
            at_least = cost[j] <= cost[i] and value[j] >= value[i]
            if at_least and (cost[j] < cost[i] or value[j] > value[i]):
                dominated = True
        out[i] = not dominated
    return out


@pytest.mark.parametrize("seed", range(25))
def test_the_front_sweep_agrees_with_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    cost = rng.integers(1, 8, n).astype(float)  # few levels: ties in cost and in value
    value = rng.integers(0, 6, n).astype(float)
    cost[rng.random(n) < 0.1] = np.nan
    np.testing.assert_array_equal(front_mask(cost, value), brute_force_front(cost, value))


def test_spaces_show_prints_the_fidelity_plan(capsys):
    assert main(["spaces", "show", "fig10_ms_classification_fidelity"]) == 0
    out = capsys.readouterr().out
    assert "fidelity schedule, counted on a GTEA61 epoch" in out
    rows = [
        line.split() for line in out.splitlines() if line.startswith(("  1 ", "  2 ", "  full"))
    ]
    assert [r[1] for r in rows] == ["1-10", "11-35", "36-100"]
    assert [r[-1] for r in rows] == ["36", "12", "4"]
    assert "PFLOP" in out and "% of the grid with sharing" in out


def test_a_replayed_schedule_is_scored_in_flops_each_shared_epoch_once():
    """``bench.fidelity_replay.score`` on a replay that received every stitched epoch (as a
    grid would): its FLOPs are the cheap recording's computed epochs up to the switch and the
    full one's after it, counted from ``computed_by``; what it found is the grid's best."""
    from bench.fidelity_replay import epoch_costs, score
    from bench.replay_efficiency import FIDELITY_FIXTURES
    from tuner.results import load_experiment
    from tuner.tune.replay import ReplayOutcome, load_recorded, stitch_fidelities

    full_path, cheap_path = FIDELITY_FIXTURES
    high, low = load_recorded(full_path), load_recorded(cheap_path)
    full, cheap = load_experiment(full_path, None), load_experiment(cheap_path, None)
    stitched = stitch_fidelities(low, high, 10)
    reported = [(t, e, v) for t, curve in stitched.curves.items() for e, v, _ in curve]
    outcome = ReplayOutcome("asha", 0, 36, len(reported), None, 0.0, 720, tuple(reported))
    costs = epoch_costs([full, cheap], 144)
    computed = {
        name: experiment.epochs[experiment.epochs["computed_by"] == experiment.epochs["trial_id"]]
        for name, experiment in ((full.name, full), (cheap.name, cheap))
    }
    cheap_epochs = int((computed[cheap.name]["epoch"] <= 10).sum())
    full_epochs = int((computed[full.name]["epoch"] > 10).sum())
    grid = len(computed[full.name]) * costs.per_epoch[full.name]
    scored = score(outcome, stitched, costs, full, grid, shares=True)
    expected = cheap_epochs * costs.per_epoch[cheap.name] + full_epochs * costs.per_epoch[full.name]
    assert math.isclose(scored.flops, expected, rel_tol=1e-12)
    assert scored.found_value == full.trials["best_val_acc"].max() and scored.p_value == 1.0
    unshared = score(outcome, stitched, costs, full, grid, shares=False)
    assert unshared.flops > scored.flops  # Optuna's count: every reported epoch
    assert costs.per_epoch[cheap.name] < 0.4 * costs.per_epoch[full.name]
