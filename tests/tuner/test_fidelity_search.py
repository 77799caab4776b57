"""A real search with a fidelity schedule, its driver killed and resumed on a running cluster (the
test's local Ray), as when a laptop dies; then the accuracy-versus-cost front and the
recommendation on its tables, on the command line and in the web view.

The grid crosses two learning rates with two clip lengths, so the finished trials cost different
FLOPs; the rungs train epoch 1 on 2-frame 32-pixel clips and epoch 2 on 2-frame 48-pixel ones,
and ASHA (reduction factor 2) compares the trials after each.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.browser import ui_on
from tests.conftest import tiny_config_values
from tests.drills import kill_search_when, resume_search, undisturbed_records
from tests.tables import assert_every_row_once
from tuner.cli import main
from tuner.results import load_experiment, pareto_front, recommend, significance_vs_best
from tuner.training.fidelity import FidelitySchedule

pytestmark = [pytest.mark.slow]

RUNGS = [{"until": 1, "frames": 2, "crop_size": 32}, {"until": 2, "frames": 2}]
EPOCHS = 4


@pytest.fixture(scope="module")
def searched(synthetic_root, tmp_path_factory, local_ray_address) -> Path:
    """The search, killed once two trials have written a checkpoint, then resumed."""
    dropped = ("stage1", "device", "frames")
    tiny = {k: v for k, v in tiny_config_values().items() if k not in dropped}
    doc = {
        "fixed": {**tiny, "model": "ego_rnn", "stage": 1, "epochs": EPOCHS, "crop_size": 48},
        "grid": {"lr": [1e-3, 3e-4], "frames": [3, 4]},
        "scheduler": {
            "algorithm": "asha",
            "reduction_factor": 2,
            "max_concurrent": 2,
            "rungs": RUNGS,
        },
        "resources": {"cpus": 1, "gpus": 0},
    }
    doc["fixed"]["checkpoint_every"] = 1
    root = tmp_path_factory.mktemp("fidelity")
    space = root / "fidelity.yaml"
    space.write_text(yaml.safe_dump(doc))
    storage = root / "results"
    experiment = storage / "fid"
    kill_search_when(
        space,
        synthetic_root,
        storage,
        "fid",
        lambda: len(list(experiment.glob("checkpoints/*/state-e*.pt"))) >= 3,
        address=local_ray_address,
    )
    before = pd.read_parquet(experiment / "epochs.parquet") if _has_rows(experiment) else None
    console = resume_search(storage, "fid", address=local_ray_address)
    # the resumed console is a fresh search's: Tune's classic table with the same columns
    assert "AIR_VERBOSITY is set" not in console and "Trial status:" not in console
    header = [line for line in console.splitlines() if line.startswith("| Trial name")][-1]
    assert "val_acc" in header and "best_val_acc" in header and "epoch" in header
    assert (
        "fidelity schedule: epochs 1-1 at 2 frames, 32 px; 2-2 at 2 frames; then each trial's "
        "own size; ASHA compares the trials after epochs 1, 2 (eta 2)"
    ) in console
    if before is not None:  # what was written before the kill is there, unchanged
        after = pd.read_parquet(experiment / "epochs.parquet")
        merged = before.merge(after, on=["trial_id", "epoch"], suffixes=("", "_after"))
        assert len(merged) == len(before)
        assert (merged["val_acc"] == merged["val_acc_after"]).all()
    return experiment


def _has_rows(experiment: Path) -> bool:
    return any((experiment / "epochs.parquet").glob("*.parquet"))


def test_each_trial_epoch_once_at_its_rungs_size_and_promotions_continue(searched, synthetic_root):
    assert_every_row_once(searched, trials=4)
    experiment = load_experiment(searched, None)
    epochs, trials = experiment.epochs, experiment.trials
    schedule = FidelitySchedule.from_config([[r["until"], r["frames"], r.get("crop_size")]
                                             for r in RUNGS])  # fmt: skip
    for row in epochs.itertuples():
        frames = trials.set_index("trial_id").at[row.trial_id, "frames"]
        assert (row.frames, row.crop_size) == schedule.size_at(row.epoch, frames, 48), row
    last = epochs.groupby("trial_id")["epoch"].max()
    assert set(last) <= {1, 2, EPOCHS}, last  # stopped only at a rung
    assert (last == EPOCHS).any()  # promoted through both rungs
    assert len(epochs) == int(trials["epochs_run"].sum())
    # a promoted trial went on from its own state through both promotions: its rows, kill and
    # resume included, are those of the engine run straight through with the same schedule
    promoted = trials.set_index("trial_id").loc[last[last == EPOCHS].index[0]]
    values = tiny_config_values(
        model="ego_rnn", stage=1, epochs=EPOCHS, crop_size=48, lr=float(promoted["lr"]),
        frames=int(promoted["frames"]), checkpoint_every=1,
    )  # fmt: skip
    values.pop("stage1")
    expected = undisturbed_records(synthetic_root, values, fidelity=schedule)
    got = epochs[epochs["trial_id"] == promoted.name].sort_values("epoch")
    pd.testing.assert_frame_equal(
        got[expected.columns].reset_index(drop=True), expected, check_dtype=False
    )
    # the trials table's cost is the sum of the trial's epoch rows, each once
    summed = epochs.groupby("trial_id")["flops"].sum()
    for trial in trials.itertuples():
        assert math.isclose(trial.flops, summed[trial.trial_id], rel_tol=1e-9)
        assert trial.gpu_seconds == 0.0  # CPU trials


def test_the_front_matches_a_brute_force_and_the_figure_is_written(searched, tmp_path, capsys):
    experiment = load_experiment(searched, None)
    frame = pareto_front(experiment)
    points = list(zip(frame["trial_id"], frame["cost"], frame["best_val_acc"], strict=True))
    for trial_id, cost, value in points:
        dominated = any(
            c <= cost and v >= value and (c < cost or v > value)
            for other, c, v in points
            if other != trial_id
        )
        assert frame.set_index("trial_id").at[trial_id, "on_front"] == (not dominated)
    png = tmp_path / "front.png"
    assert main(["results", "pareto", str(searched), "--json", "--out", str(png)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [t["trial_id"] for t in payload["trials"] if t["on_front"]] == list(
        frame.loc[frame["on_front"], "trial_id"]
    )
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def exact_two_sided_binomial(b: int, c: int) -> float:
    """McNemar's exact test by hand: twice the smaller binomial tail of b among b + c."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def test_the_recommendation_matches_a_hand_counted_mcnemar_table(searched, capsys):
    experiment = load_experiment(searched, None)
    found = recommend(experiment)
    trials = experiment.trials.set_index("trial_id")
    predictions = experiment.predictions

    def outcome(trial_id: str) -> pd.Series:
        epoch = int(trials.at[trial_id, "best_epoch"])
        rows = predictions[(predictions["trial_id"] == trial_id) & (predictions["epoch"] == epoch)]
        return rows.set_index("video")["correct"]

    finished = [t for t in trials.index if not trials.at[t, "early_stopped"]]
    accuracy = {t: outcome(t).mean() for t in trials.index}
    best = max(trials.index, key=lambda t: (accuracy[t], -list(trials.index).index(t)))
    assert found["best"]["trial_id"] == best
    raw = {}
    for trial_id in trials.index:
        if trial_id == best:
            continue
        a, b = outcome(best), outcome(trial_id)
        raw[trial_id] = exact_two_sided_binomial(int((a & ~b).sum()), int((~a & b).sum()))
    # Holm by hand: the k-th smallest p times (m - k), running maximum, capped at 1
    order, holm, running = sorted(raw, key=raw.get), {}, 0.0
    for k, trial_id in enumerate(order):
        running = max(running, min(1.0, (len(raw) - k) * raw[trial_id]))
        holm[trial_id] = running
    table = significance_vs_best(experiment).set_index("trial_id")  # what recommend reads
    for trial_id in raw:
        assert math.isclose(table.at[trial_id, "p_value"], raw[trial_id], rel_tol=1e-9)
        assert math.isclose(table.at[trial_id, "p_holm"], holm[trial_id], rel_tol=1e-9)
    tied = [t for t in finished if t == best or holm[t] >= 0.05]
    cheapest = min(tied, key=lambda t: (trials.at[t, "flops"], -accuracy[t]))
    assert found["recommended"]["trial_id"] == cheapest
    if cheapest != best:
        assert math.isclose(found["p_value"], raw[cheapest], rel_tol=1e-9)
        assert math.isclose(found["p_holm"], holm[cheapest], rel_tol=1e-9)
        saving = 1 - trials.at[cheapest, "flops"] / trials.at[best, "flops"]
        assert math.isclose(found["saving"], saving, rel_tol=1e-9)

    assert main(["results", "recommend", str(searched)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"best:        {best} ")
    assert f"recommended: {cheapest} " in out or "recommended: the best itself" in out


def test_the_experiment_page_draws_the_front_with_the_recommendation(searched, page):
    import os

    experiment = load_experiment(searched, None)
    found = recommend(experiment)
    frame = pareto_front(experiment).dropna(subset=["cost"])
    with ui_on(str(searched.parent), dict(os.environ)) as url:
        page.goto(f"{url}/experiments/{searched.name}")
        page.wait_for_selector("body[data-drawn]", timeout=60_000)
        panel = page.locator("#pareto")
        panel.scroll_into_view_if_needed()
        drawn = page.evaluate(
            """() => document.querySelector('#pareto').data.map(
                (t) => ({name: t.name, n: t.x.length, ids: t.text || []}))"""
        )
        note = page.locator("#pareto-note").inner_text()
    by_name = {t["name"]: t for t in drawn}
    front = frame[frame["on_front"]]
    assert by_name["Pareto front"]["n"] == len(front)
    shown = sum(t["n"] for name, t in by_name.items() if name != "Pareto front")
    assert shown == len(frame)
    stopped = frame["early_stopped"].fillna(False).astype(bool)
    if stopped.any():
        assert set(by_name["stopped early"]["ids"]) == set(frame.loc[stopped, "trial_id"])
    if found["same_trial"]:
        assert f"best trial {found['best']['trial_id']} is also the cheapest" in note
    else:
        assert f"Recommended: {found['recommended']['trial_id']}" in note
