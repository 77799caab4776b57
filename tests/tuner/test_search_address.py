"""``egotune search --address`` against a head started with ``ray start --head`` on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import tiny_config_values

RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def ray_head(tmp_path):
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run(
        [str(RAY), "start", "--head", f"--port={port}",
         "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
        check=True, capture_output=True, env=env, timeout=120,
    )  # fmt: skip
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(RAY), "stop", "--force"], capture_output=True, env=env, timeout=120)


@pytest.mark.skipif(shutil.which(str(RAY)) is None, reason="the ray command is not installed")
def test_search_runs_on_an_existing_cluster(ray_head, synthetic_root, tmp_path):
    fixed = {k: v for k, v in tiny_config_values().items() if k not in ("stage1", "device")}
    space_file = tmp_path / "tiny_address.yaml"
    space_file.write_text(
        yaml.safe_dump(
            {
                "fixed": {**fixed, "model": "ego_rnn", "stage": 1, "epochs": 1},
                "grid": {"lr": [1e-3, 1e-4]},
                "scheduler": {"algorithm": "grid"},
                "resources": {"cpus": 1, "gpus": 0},
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "tuner.cli", "search", str(space_file),
         "--data", str(synthetic_root), "--storage", str(tmp_path / "results"),
         "--name", "remote", "--address", ray_head],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    trials = pd.read_parquet(tmp_path / "results" / "remote" / "trials.parquet")
    assert sorted(trials["lr"]) == [1e-4, 1e-3]
    assert set(trials["status"]) == {"TERMINATED"}


def test_an_unreachable_address_is_a_one_line_error(synthetic_root, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tuner.cli", "search", "demo", "--data", str(synthetic_root),
         "--storage", str(tmp_path), "--address", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert "--address" in lines[-1] and "Traceback" not in done.stderr
