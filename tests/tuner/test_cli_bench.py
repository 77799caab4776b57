"""`egotune bench`: the benchmark runner and the shared result recorder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.record import record
from tuner import cli
from tuner.cli.bench import available


def test_record_writes_json_and_appends_one_row_per_run(tmp_path: Path) -> None:
    md, out = tmp_path / "RESULTS.md", tmp_path / "results"
    first = record(
        "demo", {"clips_per_s": 12.5}, command="egotune bench demo", results_md=md, results_dir=out
    )
    second = record(
        "demo", {"clips_per_s": 13.0}, details={"n": 3}, command="x", results_md=md, results_dir=out
    )
    assert first != second and first.exists() and second.exists()
    payload = json.loads(second.read_text())
    assert payload["figures"] == {"clips_per_s": 13.0} and payload["details"] == {"n": 3}
    assert payload["machine"]["cores"] >= 1
    rows = [line for line in md.read_text().splitlines() if line.startswith("| 20")]
    assert len(rows) == 2
    assert "`egotune bench demo`" in rows[0] and "clips_per_s=12.5" in rows[0]


def test_bench_lists_scripts_and_refuses_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert "model_stats" in available()
    assert cli.main(["bench", "list"]) == 0
    assert "model_stats" in capsys.readouterr().out
    assert cli.main(["bench", "no_such_bench"]) == 2
    err = capsys.readouterr().err
    assert "no_such_bench" in err and "model_stats" in err and "Traceback" not in err
