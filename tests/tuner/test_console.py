"""The console of a search: Tune's table with the optimised metric and the best so far, no
per-checkpoint lines or snapshot warnings, and a final report that points only at what still
exists (tables, next commands), in text or as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.tables import assert_every_row_once
from tuner.spaces import list_spaces, load_space
from tuner.tune.console import build_progress_reporter
from tuner.tune.schedulers import build_tune_config


@pytest.mark.parametrize("name", sorted(list_spaces()))
def test_every_bundled_space_gets_a_reporter_tune_accepts(name: str, tmp_path: Path) -> None:
    """Tune hands the reporter its own metric and mode, and refuses a reporter that has
    different ones; grid and random searches carry theirs in the TuneConfig."""
    space = load_space(name)
    reporter = build_progress_reporter(space)
    config = build_tune_config(space, tmp_path / name)
    reporter.setup(start_time=time.time(), total_samples=4, metric=config.metric, mode=config.mode)
    columns = reporter._metric_columns
    assert {"epoch", space.scheduler.metric, "best_val_acc"} <= set(columns)
    assert list(reporter._parameter_columns) == space.varying_keys
    assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0"


TINY_SPACE = """\
fixed:
  model: ego_rnn
  stage: 1
  weights: none
  backbone: resnet18
  crop_size: 32
  frames: 2
  batch_size: 4
  mem_size: 16
  num_workers: 0
  device: cpu
  epochs: 2
  milestones: [1]
grid:
  lr: [1.0e-3, 1.0e-2]
  gamma: [0.1, 0.5]
scheduler: {algorithm: asha, grace_period: 1, max_t: 2, reduction_factor: 2, max_concurrent: 2}
resources: {cpus: 1, gpus: 0}
"""


@pytest.fixture(scope="module")
def searched(module_tmp, synthetic_root: Path, local_ray_address: str) -> dict[str, str]:
    """Real searches in a fresh interpreter, at the same time: one on a local Ray of its own
    (the console and the text report), one with ``--json`` on a running cluster (the test's
    local Ray)."""
    folder = module_tmp
    space = folder / "tiny.yaml"
    space.write_text(TINY_SPACE)
    env = {**os.environ, "EGOTUNE_CACHE_DIR": str(folder / "cache")}
    argv = [sys.executable, "-m", "tuner.cli", "search", str(space), "--data", str(synthetic_root)]
    argv += ["--storage", str(folder / "results")]
    runs = {
        "text": [*argv, "--name", "tiny"],
        "json": [*argv, "--name", "tiny-json", "--json", "--address", local_ray_address],
    }
    started = {
        kind: subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for kind, command in runs.items()
    }
    with ThreadPoolExecutor() as readers:  # each pipe read while both run
        outputs = readers.map(lambda search: search.communicate(timeout=300), started.values())
        said = dict(zip(started, outputs, strict=True))
    for kind, search in started.items():
        assert search.returncode == 0, said[kind][1][-3000:]
    for name in ("tiny", "tiny-json"):
        assert_every_row_once(folder / "results" / name, trials=4)
    return {
        "out": said["text"][0],
        "err": said["text"][1],
        "json_out": said["json"][0],
        "json_err": said["json"][1],
        "storage": str(folder / "results"),
    }


@pytest.mark.slow
def test_the_live_table_shows_the_metric_and_the_best_so_far(searched: dict[str, str]) -> None:
    console = searched["out"] + searched["err"]
    headers = [line for line in console.splitlines() if line.startswith("| Trial name")]
    header = headers[-1]  # the last table, printed when the search ends
    assert "val_acc" in header and "best_val_acc" in header and "epoch" in header
    assert "Current best trial:" in console and "with best_val_acc=" in console
    assert "Checkpoint successfully created" not in console
    assert "snapshotting has been triggered" not in console
    assert "Traceback" not in console


@pytest.mark.slow
def test_the_report_points_at_the_tables_and_the_next_commands(searched: dict[str, str]) -> None:
    out, storage = searched["out"], searched["storage"]
    report = out[out.index("Search tiny finished") :]
    assert f"{storage}/tiny/trials.parquet" in report
    assert f"egotune results top tiny --storage {storage}" in report
    assert f"egotune results pivot tiny --rows lr --cols gamma --storage {storage}" in report
    assert f"egotune ui --storage {storage}" in report
    assert "gamma=0.1" in report and "gamma=0.5" in report  # the Fig. 10-style table
    assert "dashboard" not in report  # the local Ray stopped with the command
    # nothing after the report: the workers' last lines come before it
    assert out.rstrip().endswith(f"egotune ui --storage {storage}")


@pytest.mark.slow
def test_json_puts_only_the_report_on_stdout(searched: dict[str, str]) -> None:
    report = json.loads(searched["json_out"])
    assert report["experiment"] == "tiny-json" and report["trials"] == 4
    assert report["best"]["best_val_acc"] == max(row["best_val_acc"] for row in report["top"])
    assert {cell["gamma"] for cell in report["pivot"]["cells"]} == {0.1, 0.5}
    assert Path(report["tables"]["trials"]).is_file()
    assert report["dashboard"] is None
    assert "| Trial name" in searched["json_err"]  # the live console went to stderr


def _egotune_command(path: str, cwd: Path) -> str:
    code = "from tuner.cli.search_summary import egotune_command; print(egotune_command())"
    env = {**os.environ, "PATH": path}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, check=True
    )
    return done.stdout.strip()


def test_next_commands_name_the_environments_egotune_when_the_path_lacks_it(
    tmp_path: Path,
) -> None:
    """After ``make setup`` in a shell that has not activated ``.venv``, ``egotune`` is not
    found: the commands a search prints must work as printed."""
    script = Path(sys.executable).with_name("egotune")
    assert script.is_file()
    assert _egotune_command(str(script.parent), tmp_path) == "egotune"
    assert _egotune_command("/usr/bin:/bin", tmp_path) == str(script.absolute())
    below = _egotune_command("/usr/bin:/bin", script.parent.parent.parent)
    assert below == str(script.absolute().relative_to(script.parent.parent.parent))
