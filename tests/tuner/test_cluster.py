"""egotune on a real two-node Ray cluster on loopback: search, Ray jobs, metrics, dashboard.

The cluster is started with ``ray start --head`` (dashboard on 127.0.0.1, token authentication on,
as Ray configures it) plus a second node started with ``ray start --address``, each with one CPU,
so two concurrent trials can only run on different nodes. Clients pass the token explicitly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import tiny_config_values
from tests.ray_cluster import RAY, LoopbackCluster, cluster_env, free_port
from tests.tables import assert_every_row_once
from tuner import cli
from tuner.tune.trainable import ACTOR_NAME_PREFIX

pytestmark = [
    pytest.mark.slow,
    pytest.mark.ray,
    pytest.mark.skipif(not RAY.exists(), reason="the ray command is not installed"),
]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT_DIR_ENV = "EGOTUNE_SCREENSHOT_DIR"  # where to keep the dashboard screenshot


@pytest.fixture(scope="module")
def cluster():
    with LoopbackCluster(head_cpus=1, dashboard=True) as running:
        running.add_node(cpus=1)
        yield running


def token() -> str:
    value = os.environ.get("RAY_AUTH_TOKEN")
    if value:
        return value.strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    return path.read_text().strip()


def api(cluster: LoopbackCluster, path: str) -> dict:
    request = urllib.request.Request(
        cluster.dashboard_url + path, headers={"Authorization": f"Bearer {token()}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def write_space(folder: Path, epochs: int, lrs: list[float], **settings: object) -> Path:
    values = tiny_config_values(**settings)
    fixed = {k: v for k, v in values.items() if k not in ("stage1", "device")}
    path = folder / "tiny_cluster.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "fixed": {**fixed, "model": "ego_rnn", "stage": 1, "epochs": epochs},
                "grid": {"lr": lrs},
                "scheduler": {"algorithm": "grid"},
                "resources": {"cpus": 1, "gpus": 0},
            }
        )
    )
    return path


def egotune(*args: str) -> list[str]:
    return [sys.executable, "-m", "tuner.cli", *args]


def scrape(cluster: LoopbackCluster, metrics: tuple[str, ...], experiment: str) -> dict:
    """Sample lines of each of ``metrics`` for ``experiment``, read from every node's metrics
    endpoint once (one snapshot for all of them)."""
    lines: dict[str, list[str]] = {metric: [] for metric in metrics}
    for target in cluster.metrics_endpoints():
        try:
            with urllib.request.urlopen(f"http://{target}/metrics", timeout=10) as response:
                text = response.read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            for metric in metrics:
                if line.startswith(f"ray_{metric}{{") and f'experiment="{experiment}"' in line:
                    lines[metric].append(line)
    return lines


def assert_complete_tables(experiment: Path, trials: int, epochs: int) -> None:
    assert_every_row_once(experiment, trials=trials)
    table = pd.read_parquet(experiment / "trials.parquet")
    rows = pd.read_parquet(experiment / "epochs.parquet")
    assert len(table) == trials and set(table["status"]) == {"TERMINATED"}
    assert not rows.duplicated(["trial_id", "epoch"]).any()
    for _, group in rows.groupby("trial_id"):
        assert sorted(group["epoch"]) == list(range(1, epochs + 1))


def test_search_spreads_over_two_nodes_with_named_actors_and_metrics(
    cluster, synthetic_root, tmp_path
):
    # epochs of a third of a second: the workers export their metrics (every 2 s) while they run
    space = write_space(tmp_path, epochs=4, lrs=[1e-3, 1e-4], crop_size=64)
    storage = tmp_path / "results"
    search = subprocess.Popen(
        egotune("search", str(space), "--data", str(synthetic_root), "--storage", str(storage),
                "--name", "spread", "--address", cluster.address),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    metrics = ("egotune_val_acc", "egotune_epoch", "egotune_clips_per_s")
    seen: dict[str, list[str]] = {metric: [] for metric in metrics}
    try:
        while search.poll() is None:
            for metric, lines in scrape(cluster, metrics, "spread").items():
                seen[metric] = seen[metric] or lines
            time.sleep(1)
        output = search.stdout.read() if search.stdout else ""
    finally:
        search.kill()
    assert search.returncode == 0, output[-3000:]
    assert_complete_tables(storage / "spread", trials=2, epochs=4)

    for metric in metrics:
        assert seen[metric], f"{metric} never appeared on {cluster.metrics_endpoints()}"
        assert re.search(r'trial="[^"]+"', seen[metric][0])

    actors = api(cluster, "/api/v0/actors?detail=1&limit=1000")["data"]["result"]["result"]
    trial_actors = [a for a in actors if (a.get("repr_name") or "").startswith(ACTOR_NAME_PREFIX)]
    trial_ids = tuple(pd.read_parquet(storage / "spread" / "trials.parquet")["trial_id"])
    ours = [a for a in trial_actors if a["repr_name"].endswith(trial_ids)]
    assert {a["repr_name"][-len(trial_ids[0]) :] for a in ours} == set(trial_ids)
    nodes = {a["node_id"] for a in ours}
    assert len(nodes) == 2, "two one-CPU nodes and two concurrent trials: one trial per node"


@pytest.fixture(scope="module")
def python_client_job(cluster, synthetic_root, module_tmp) -> tuple[str, Path]:
    """A search submitted with Ray's own Python client, as a researcher's script would; it runs
    while ``egotune submit`` runs its own job next to it. Returns the job id and its storage."""
    from ray.job_submission import JobSubmissionClient

    folder = module_tmp / "pyclient"
    folder.mkdir()
    space = write_space(folder, epochs=3, lrs=[1e-3])
    storage = folder / "results"
    client = JobSubmissionClient(
        cluster.dashboard_url, headers={"Authorization": f"Bearer {token()}"}
    )
    job_id = client.submit_job(
        entrypoint=f"egotune search {space.name} --data {synthetic_root} "
        f"--storage {storage} --name pyclient",
        submission_id="egotune-pyclient",
        runtime_env={"working_dir": str(folder), "excludes": ["results"],
                     "env_vars": {"RAY_AUTH_MODE": "token"}},
    )  # fmt: skip
    return job_id, storage


def test_submit_runs_the_search_as_a_ray_job(cluster, synthetic_root, tmp_path, python_client_job):
    from ray.job_submission import JobStatus, JobSubmissionClient

    space = write_space(tmp_path, epochs=2, lrs=[1e-3, 1e-4])
    storage = tmp_path / "results"
    done = subprocess.run(
        egotune("--debug", "submit", str(space), "--address", cluster.dashboard_url,
                "--data", str(synthetic_root), "--storage", str(storage), "--name", "job",
                "--set", "frames=3"),
        capture_output=True, text=True, timeout=600, env=cluster_env(),
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "submitted job egotune-job" in done.stdout

    client = JobSubmissionClient(
        cluster.dashboard_url, headers={"Authorization": f"Bearer {token()}"}
    )
    assert client.get_job_status("egotune-job") == JobStatus.SUCCEEDED
    info = client.get_job_info("egotune-job")
    assert info.metadata["egotune_experiment"] == "job"
    assert info.runtime_env["env_vars"]["RAY_AUTH_MODE"] == "token"
    assert "RAY_AUTH_TOKEN" not in json.dumps(info.runtime_env)
    assert_complete_tables(storage / "job", trials=2, epochs=2)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_a_python_client_job_shows_on_the_dashboard_jobs_page_and_succeeds(
    cluster, tmp_path, python_client_job
):
    from playwright.sync_api import sync_playwright
    from ray.job_submission import JobStatus, JobSubmissionClient

    job_id, storage = python_client_job
    client = JobSubmissionClient(
        cluster.dashboard_url, headers={"Authorization": f"Bearer {token()}"}
    )
    shot = tmp_path / "dashboard-jobs.png"
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            page = browser.new_page(
                viewport={"width": 1400, "height": 900},
                extra_http_headers={"Authorization": f"Bearer {token()}"},
            )
            page.goto(f"{cluster.dashboard_url}/#/jobs", wait_until="domcontentloaded")
            page.get_by_text(job_id).first.wait_for(timeout=90_000)
            page.screenshot(path=str(shot), full_page=True)
            body = page.inner_text("body")
        finally:
            browser.close()
    assert job_id in body
    assert shot.stat().st_size > 10_000
    keep = os.environ.get(SCREENSHOT_DIR_ENV)
    if keep:
        shutil.copy2(shot, Path(keep) / shot.name)

    deadline = time.monotonic() + 400
    while (status := client.get_job_status(job_id)) not in {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.STOPPED,
    }:
        assert time.monotonic() < deadline, client.get_job_logs(job_id)[-3000:]
        time.sleep(2)
    assert status == JobStatus.SUCCEEDED, client.get_job_logs(job_id)[-3000:]
    assert_complete_tables(storage / "pyclient", trials=1, epochs=3)


def test_an_unreachable_address_is_a_one_line_error(synthetic_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # keep this process's Ray client untouched
    address = f"127.0.0.1:{free_port()}"
    for command in (
        ["search", "demo", "--data", str(synthetic_root), "--storage", str(tmp_path)],
        ["submit", "demo", "--data", str(synthetic_root)],
    ):
        target = f"http://{address}" if command[0] == "submit" else address
        assert cli.main([*command, "--address", target]) != 0
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--address" in err and "Traceback" not in err, err
