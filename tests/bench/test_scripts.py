"""The data and training-step benchmarks run end to end with tiny sizes (no figures asserted)."""

from __future__ import annotations

import json

import pytest

from bench import data_loader, train_step


def test_data_loader_bench_measures_every_loader_and_both_epochs(capsys):
    flags = ["--frames", "2", "--crop", "32", "--clips", "2", "--size", "64x36", "--classes", "3"]
    assert data_loader.main([*flags, "--json", "--no-record"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["store_equals_png"] is True
    assert set(report["clips_per_s"]) == {
        "reference",
        "png",
        "store",
        "store_deferred_loader",
        "store_deferred_with_finish",
    }
    assert all(rate > 0 for rate in report["clips_per_s"].values())
    assert set(report["step"]) == {"store", "png"}
    assert all(0 <= v["data_wait_frac"] < 1 for v in report["step"].values())


@pytest.fixture
def step_flags() -> list[str]:
    # batch 2: the flow network trains BatchNorm, which needs two values per channel
    return [
        "--models",
        "ego_rnn_ms_sd,flow_resnet34",
        "--frames",
        "2",
        "--batch",
        "2",
        "--crop",
        "32",
    ]


def test_train_step_bench_counts_on_fake_tensors_what_a_real_step_holds(capsys, step_flags):
    assert train_step.main([*step_flags, "--steps", "1", "--json", "--no-record"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert train_step.main([*step_flags, "--plan", "--json", "--no-record"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert [(r["model"], r["stage"]) for r in measured] == [
        ("ego_rnn_ms_sd", 1),
        ("ego_rnn_ms_sd", 2),
        ("flow_resnet34", 1),
    ]
    assert all(r["clips_per_s"] > 0 and r["error"] is None for r in measured)
    for real, fake in zip(measured, planned, strict=True):
        assert fake["tensor_peak_mib"] == pytest.approx(real["tensor_peak_mib"], rel=1e-6)
        assert fake["gflops_per_clip"] == pytest.approx(real["gflops_per_clip"], rel=1e-6)
