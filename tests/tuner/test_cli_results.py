"""``egotune results`` on hand-built tables with known answers and on a real small search."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tests.conftest import tiny_config_values
from tests.tables import assert_every_row_once
from tests.tuner.test_results import assert_real_png, write_handmade
from tuner.cli import main
from tuner.spaces import parse_space
from tuner.tune.search import SearchOptions, run_search

NOT_HYPERPARAMETERS = {
    "trial_id",
    "status",
    "seed",
    "best_val_acc",
    "best_epoch",
    "epochs_run",
    "wall_seconds",
    "flops",
    "gpu_seconds",
    "checkpoint",
    "early_stopped",
    "num_failures",
}


@pytest.fixture
def storage(tmp_path, monkeypatch) -> Path:
    write_handmade(tmp_path / "grid")
    monkeypatch.setenv("EGOTUNE_STORAGE", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def real_experiment(module_tmp, synthetic_root, local_ray) -> Path:
    """A real grid of two learning rates by two seeds, two epochs each, on a local Ray."""
    fixed = {k: v for k, v in tiny_config_values().items() if k not in ("epochs", "stage1")}
    doc = {
        "fixed": {**fixed, "model": "ego_rnn", "stage": 1, "epochs": 2},
        "grid": {"lr": [1e-3, 1e-2], "seed": [0, 1]},
        "scheduler": {"algorithm": "grid"},
        "resources": {"cpus": 1, "gpus": 0},
    }
    storage = module_tmp
    options = SearchOptions(data=synthetic_root, storage=storage, name="real", verbose=0, argv=[])
    outcome = run_search(parse_space(doc, source="real.yaml", name="real"), options)
    assert_every_row_once(outcome.experiment_dir, trials=4)
    return outcome.experiment_dir


def run_json(capsys, *argv: str):
    assert main(["results", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_pivot_prints_the_grid_layout(storage, capsys):
    assert main(["results", "pivot", "grid", "--rows", "lr,milestones", "--cols", "gamma"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "mean best_val_acc by lr, milestones / gamma"
    assert lines[1].split() == ["gamma", "0.1", "0.2"]
    assert lines[2].split() == ["lr", "milestones"]
    words = [" ".join(line.split()) for line in lines]
    assert words[3] == "1e-04 [30, 70] 70.00 70.50"
    assert words[4] == "[40, 80] 72.00 72.50"
    assert words[5] == "1e-03 [30, 70] 50.00 50.50"
    assert len(lines) == 7


def test_pivot_saves_csv_and_markdown(storage, tmp_path, capsys):
    csv, markdown = tmp_path / "fig10.csv", tmp_path / "fig10.md"
    argv = ["pivot", "grid", "--rows", "lr", "--cols", "gamma", "--agg", "max"]
    assert main(["results", *argv, "--csv", str(csv), "--markdown", str(markdown)]) == 0
    table = pd.read_csv(csv, index_col=0)
    assert table.loc[1e-4, "0.2"] == pytest.approx(73.5)
    text = markdown.read_text().splitlines()
    assert text[0] == "| lr | 0.1 | 0.2 |"
    assert text[2] == "| 1e-04 | 73.00 | 73.50 |"


def test_pivot_names_a_wrong_flag(storage, capsys):
    assert main(["results", "pivot", "grid", "--rows", "lr", "--cols", "step_size"]) == 2
    assert "--cols step_size" in capsys.readouterr().err


def test_top_json_gives_seed_groups(storage, capsys):
    top = run_json(capsys, "top", "grid", "-k", "3")
    assert [row["n"] for row in top] == [3, 3, 3]
    assert top[0]["mean"] == pytest.approx(72.5) and top[0]["std"] == pytest.approx(1.0)
    assert top[0]["milestones"] == "[40, 80]"


def test_top_text_shows_mean_plus_minus_std(storage, capsys):
    assert main(["results", "top", "grid", "-k", "1"]) == 0
    assert "72.50 ± 1.00 (n=3)" in capsys.readouterr().out


def columns_of(line: str) -> list[tuple[int, int]]:
    """Where each run of text separated by two or more spaces starts and ends."""
    import re

    return [(m.start(), m.end()) for m in re.finditer(r"\S+(?: \S+)*", line)]


def test_top_text_aligns_each_header_with_its_column_and_counts_seeds(storage, capsys):
    assert main(["results", "top", "grid", "-k", "2"]) == 0
    header, first, second = capsys.readouterr().out.splitlines()
    assert [header[a:b] for a, b in columns_of(header)] == [
        "gamma", "lr", "milestones", "best_val_acc", "95 % CI", "best", "seeds", "epochs_run"
    ]  # fmt: skip
    for row in (first, second):
        spans = columns_of(row)
        assert len(spans) == 8, row
        for (h_start, h_end), (start, end) in zip(columns_of(header), spans, strict=True):
            assert start == h_start or end == h_end, (header, row)  # flush left or right
    assert row[slice(*columns_of(second)[6])] == "3"  # three seeds, not the seed values


def test_accuracy_prints_hyperparameters_as_top_does(tmp_path, capsys):
    from tests.tuner.test_stats import pattern, write_experiment

    cells = {
        "a": ({"lr": 3e-4, "weight_decay": 1e-5}, pattern(30)),
        "b": ({"lr": 1e-3, "weight_decay": 5e-4}, pattern(20)),
    }
    write_experiment(tmp_path / "grid", cells)
    assert main(["results", "accuracy", "grid", "--storage", str(tmp_path)]) == 0
    header, first, second, *_ = capsys.readouterr().out.splitlines()
    assert header.split()[:4] == ["trial_id", "status", "lr", "weight_decay"]
    assert [first.split()[2:4], second.split()[2:4]] == [["3e-04", "1e-05"], ["1e-03", "5e-04"]]


def test_the_default_level_of_the_parser_is_that_of_the_results_package():
    from tuner import results
    from tuner.cli import results as command
    from tuner.cli import results_stats

    assert command.LEVEL == results_stats.LEVEL == results.LEVEL


def test_folds_of_a_search_without_folds_is_one_line(storage, capsys):
    assert main(["results", "folds", "grid"]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("egotune: error: folds: this search has no cross-validation folds")
    assert len(err.splitlines()) == 1 and "no column" not in err and not out


def test_list_json_counts_trials_by_status(storage, capsys):
    (listed,) = run_json(capsys, "list")
    assert listed["experiment"] == "grid"
    assert listed["status"] == {"TERMINATED": 24}
    assert listed["best"] == pytest.approx(73.5)


def test_curves_write_a_png(storage, tmp_path, capsys):
    out = tmp_path / "fig12.png"
    report = run_json(capsys, "curves", "grid", "--trials", "t00,t05", "--out", str(out))
    assert report["trials"] == ["t00", "t05"]
    assert_real_png(out, min_size=(1200, 800))


def test_curves_name_an_unknown_trial(storage, tmp_path, capsys):
    argv = ["results", "curves", "grid", "--trials", "zz", "--out", str(tmp_path / "c.png")]
    assert main(argv) == 2
    assert "--trials" in capsys.readouterr().err


def test_importance_json_and_plot(storage, tmp_path, capsys):
    out = tmp_path / "importance.png"
    report = run_json(capsys, "importance", "grid", "--out", str(out))
    assert next(iter(report["importances"])) == "lr"
    assert_real_png(out, min_size=(600, 200))


def test_parallel_writes_html(storage, tmp_path, capsys):
    out = tmp_path / "parallel.html"
    assert run_json(capsys, "parallel", "grid", "--out", str(out))["out"] == str(out)
    assert out.read_text().count("<polyline") == 24


def test_parallel_refuses_other_formats(storage, tmp_path, capsys):
    assert main(["results", "parallel", "grid", "--out", str(tmp_path / "p.pdf")]) == 2
    assert "--out" in capsys.readouterr().err


def test_compare_puts_two_experiments_side_by_side(storage, capsys):
    write_handmade(storage / "again")
    first, second = run_json(capsys, "compare", "grid", "again")
    assert first["experiment"] == "grid" and second["experiment"] == "again"
    assert first["epochs"] == second["epochs"] == 24 * 7
    assert first["best_configuration"]["mean"] == pytest.approx(72.5)
    assert main(["results", "compare", "grid", "again"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.split() == ["grid", "again"]


def test_export_writes_the_epochs_table(storage, tmp_path, capsys):
    out = tmp_path / "epochs.csv"
    argv = ["export", "grid", "--format", "csv", "--out", str(out), "--epochs"]
    assert run_json(capsys, *argv)["rows"] == 24 * 7
    assert len(pd.read_csv(out)) == 24 * 7


def test_an_unknown_experiment_exits_one(storage, capsys):
    assert main(["results", "top", "missing"]) == 1
    assert "missing" in capsys.readouterr().err


def test_real_search_top_json_agrees_with_duckdb(real_experiment, capsys):
    top = run_json(capsys, "top", str(real_experiment), "-k", "10")
    trials = pd.read_parquet(real_experiment / "trials.parquet")
    keys = [c for c in trials.columns if c not in NOT_HYPERPARAMETERS and c != "init_checkpoint"]
    quoted = ", ".join(f'"{k}"' for k in keys)
    query = (
        f"SELECT {quoted}, avg(best_val_acc) AS mean, stddev_samp(best_val_acc) AS std, "
        f"count(*) AS n FROM read_parquet('{real_experiment / 'trials.parquet'}') "
        f"GROUP BY {quoted}"
    )
    expected = duckdb.sql(query).df()
    assert len(top) == len(expected) == 2
    by_lr = {row["lr"]: row for row in top}
    for _, row in expected.iterrows():
        got = by_lr[row["lr"]]
        assert got["mean"] == pytest.approx(row["mean"])
        assert got["std"] == pytest.approx(row["std"])
        assert got["n"] == row["n"] == 2
    assert top[0]["mean"] >= top[1]["mean"]


def test_real_search_pivot_and_curves(real_experiment, tmp_path, capsys):
    argv = ["results", "pivot", str(real_experiment), "--rows", "lr", "--cols", "seed"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["seed", "0", "1"]
    assert [line.split()[0] for line in lines[3:]] == ["1e-03", "0.01"]
    out = tmp_path / "curves.png"
    assert main(["results", "curves", str(real_experiment), "--top", "2", "--out", str(out)]) == 0
    assert_real_png(out, min_size=(1200, 800))


def test_real_search_lists_its_space(real_experiment, capsys):
    argv = ["list", "--storage", str(real_experiment.parent)]
    (listed,) = run_json(capsys, *argv)
    assert listed["space"] == "real" and listed["trials"] == 4
    assert listed["started_at"]
