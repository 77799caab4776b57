"""The ``cli_start`` benchmark times every command in fresh processes (no figures asserted)."""

from __future__ import annotations

import json

from bench import cli_start


def test_cli_start_bench_times_each_command_once_per_run(capsys):
    assert cli_start.main(["--runs", "1", "--json", "--no-record"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["timings"]) == set(cli_start.COMMANDS)
    assert all(len(walls) == 1 and walls[0] > 0 for walls in report["timings"].values())
    assert isinstance(report["goal_met"], bool)
