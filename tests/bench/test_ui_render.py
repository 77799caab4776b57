"""The ``ui_render`` benchmark runs end to end on a small experiment (no figures asserted)."""

from __future__ import annotations

import json
import shutil

import pytest

from bench import ui_render


@pytest.mark.skipif(
    shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
    reason="Debian's chromium is not installed",
)
def test_ui_render_bench_times_every_visit_of_a_small_experiment(capsys):
    flags = ["--trials", "12", "--epochs", "8", "--repeats", "1"]
    assert ui_render.main([*flags, "--json", "--no-record"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["trials"] == 12
    assert report["epoch_rows"] == 8 * 8 + 4 + 2 + 4 + 2  # a third stopped early, as by ASHA
    (run,) = report["runs"]
    assert set(run) == {"cold", "warm", "revisit"}
    assert all(0 < first <= complete for first, complete in run.values())
