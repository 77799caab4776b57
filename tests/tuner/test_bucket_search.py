"""``egotune search --storage s3://...`` on a two-node loopback Ray cluster whose nodes share no
folder, against a real S3 API (moto's server, tests/s3_server.py).

Each node (and the driver) has a scratch folder of its own (``EGOTUNE_SCRATCH_DIR``); everything
that lasts is in the bucket. The S3 endpoint the processes see is a relay (``Switch``) that a
test cuts and restores, as an endpoint that goes away and comes back with its data.

These tests run apart from ``make test`` (``make test-bucket``; CI runs both): about three and a
half minutes of their own cluster, on top of a suite at its ten-minute limit. The refusals before
Ray starts are in ``test_bucket_refusals.py``, in the same target.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from data_pipeline import discover
from tests.browser import CHROMIUM, ui_on
from tests.conftest import tiny_config_values
from tests.drills import undisturbed_records, wait_for
from tests.ray_cluster import RAY, LoopbackCluster
from tests.s3_server import S3Server, Switch, s3_server
from tests.tables import assert_every_row_once
from tuner.storage import Bucket, pull_tables
from tuner.training.checkpoints.files import load_checkpoint
from tuner.training.config import TrainConfig
from tuner.training.engine import Trainer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.ray,
    pytest.mark.bucket,
    pytest.mark.skipif(not RAY.exists(), reason="the ray command is not installed"),
]

BUCKET = "egotune-bucket-search"
SECRET = "egotune-secret-never-shown"
TINY = {k: v for k, v in tiny_config_values().items() if k not in ("stage1", "device")}


class Setup:
    """The server, the relay in front of it, the cluster and every scratch folder."""

    def __init__(self, server: S3Server, root: Path) -> None:
        self.server = server
        self.switch = Switch(int(server.endpoint.rsplit(":", 1)[1]))
        self.scratch = {name: root / f"scratch-{name}" for name in ("head", "node", "driver")}
        self.env = {**server.env, "AWS_ENDPOINT_URL": self.switch.endpoint}
        self.cluster: LoopbackCluster | None = None

    def node_env(self, name: str) -> dict[str, str]:
        return {**self.env, "EGOTUNE_SCRATCH_DIR": str(self.scratch[name])}

    def wipe(self, *names: str) -> None:
        """The scratch folders of ``names`` (default: every node's and the driver's)."""
        for name in names or tuple(self.scratch):
            shutil.rmtree(self.scratch[name], ignore_errors=True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("bucket-search")
    with s3_server() as server:
        filesystem = pafs.S3FileSystem(
            endpoint_override=server.endpoint, region="us-east-1", allow_bucket_creation=True
        )
        filesystem.create_dir(BUCKET)
        ready = Setup(server, root)
        saved = {key: os.environ.get(key) for key in ready.env}
        os.environ.update(ready.env)  # the nodes start with the relay as their endpoint
        try:
            with LoopbackCluster(head_cpus=1, head_env=ready.node_env("head")) as cluster:
                cluster.add_node(cpus=1, env=ready.node_env("node"))
                ready.cluster = cluster
                yield ready
        finally:
            ready.switch.cut()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def write_space(folder: Path, name: str, doc: dict) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def search(setup: Setup, *argv: str) -> subprocess.Popen[str]:
    assert setup.cluster is not None
    env = {**os.environ, **setup.node_env("driver")}
    command = [sys.executable, "-m", "tuner.cli", "search", *argv]
    return subprocess.Popen(
        [*command, "--address", setup.cluster.address],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 300) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]
    return output


def bucket_files(uri: str) -> list[str]:
    filesystem, root = pafs.FileSystem.from_uri(uri)
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    return [i.path[len(root) + 1 :] for i in filesystem.get_file_info(selector) if i.size]


def snapshot_names(experiment: str, index: int) -> bool:
    """Tune's experiment snapshot in the bucket names a trial's checkpoint ``index`` (or a later
    one): a resumed trial restores from a state at least that new."""
    bucket = Bucket(experiment)
    names = [n for n in bucket.files() if n.startswith("experiment_state")]
    text = b"".join(bucket.read_bytes(n) or b"" for n in names)
    return any(f"checkpoint_{i:06d}".encode() in text for i in range(index, index + 20))


def tables_from_bucket(uri: str, into: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trials and epochs tables read with pyarrow from the bucket itself, and a local copy
    of every table (``into``) for the row checks."""
    filesystem, root = pafs.FileSystem.from_uri(uri)
    trials = pq.read_table(f"{root}/trials.parquet", filesystem=filesystem).to_pandas()
    epochs = pq.read_table(f"{root}/epochs.parquet", filesystem=filesystem).to_pandas()
    pull_tables(Bucket(uri), into)
    assert_every_row_once(into, trials=len(trials))
    return trials, epochs


def engine_rows(root: Path, values: dict) -> pd.DataFrame:
    return undisturbed_records(root, values).astype(float)


def assert_same_metrics(epochs: pd.DataFrame, trial_id: str, expected: pd.DataFrame) -> None:
    rows = epochs[epochs["trial_id"] == trial_id].sort_values("epoch").reset_index(drop=True)
    pd.testing.assert_frame_equal(
        rows[list(expected.columns)].astype(float), expected, check_exact=False, rtol=1e-6
    )


def while_running(driver: subprocess.Popen[str], condition: Callable[[], Any]) -> Any:
    """``wait_for(condition)`` while the search runs; its output when it ends first."""

    def reached() -> Any:
        if driver.poll() is not None:
            output = driver.stdout.read() if driver.stdout else ""
            raise AssertionError(f"the search ended first:\n{output[-4000:]}")
        return condition()

    return wait_for(reached, timeout=240, every=0.5)


def trial_processes(setup: Setup) -> list[int]:
    """The cluster's trial workers (Ray titles them ``ray::ImplicitFunc``)."""
    assert setup.cluster is not None
    sessions = {node.process.pid for node in setup.cluster.nodes}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
            session = os.getsid(int(entry.name))
        except OSError:
            continue
        if title.startswith(b"ray::ImplicitFunc") and session in sessions:
            found.append(int(entry.name))
    return found


# -- the grid: a killed trial, a killed driver, wiped scratch folders ---------------------------


def test_a_search_on_a_bucket_survives_a_lost_trial_and_driver_with_nothing_local(
    setup: Setup, synthetic_root: Path, tmp_path: Path, request: Any
) -> None:
    page = request.getfixturevalue("page") if CHROMIUM else None
    slower = {"crop_size": 96, "frames": 4}  # epochs long enough to act between them
    fixed = {**TINY, **slower, "model": "ego_rnn", "stage": 1, "epochs": 5, "checkpoint_every": 1}
    doc = {
        "fixed": fixed,
        "grid": {"lr": [1e-3, 1e-4]},
        "scheduler": {"algorithm": "grid"},
        "resources": {"cpus": 1, "gpus": 0},
    }
    storage = f"s3://{BUCKET}/{tmp_path.name}"
    experiment = f"{storage}/grid"
    space = write_space(tmp_path, "grid", doc)
    reference: dict[float, pd.DataFrame] = {}
    undisturbed = threading.Thread(
        target=lambda: reference.update(
            {lr: engine_rows(synthetic_root, {**fixed, "lr": lr}) for lr in (1e-3, 1e-4)}
        ),
        daemon=True,
    )
    undisturbed.start()

    def states(epoch: int) -> list[str]:
        return [f for f in bucket_files(experiment) if f.endswith(f"state-e{epoch:05d}.pt")]

    driver = search(setup, str(space), "--data", str(synthetic_root), "--storage", storage,
                    "--name", "grid", "--max-failures", "2")  # fmt: skip
    try:
        while_running(driver, lambda: states(2))
        setup.wipe("head", "node")  # a retried trial finds nothing on its node: only the bucket
        victim = wait_for(lambda: trial_processes(setup), timeout=60)[0]
        os.kill(victim, signal.SIGKILL)
        while_running(driver, lambda: states(4) and snapshot_names(experiment, 2))
        driver.send_signal(signal.SIGKILL)  # Tune's snapshot in the bucket is seconds old
        first, _ = driver.communicate(timeout=30)
    finally:
        driver.kill()
    setup.wipe()  # a new machine for the driver, new nodes: nothing local anywhere
    wait_for(lambda: not trial_processes(setup), timeout=60)
    resumed = finish(search(setup, "--resume", "grid", "--storage", storage))
    assert "Search grid finished" in resumed and "egotune: error" not in resumed, resumed[-3000:]

    trials, epochs = tables_from_bucket(experiment, tmp_path / "copy")
    assert set(trials["status"]) == {"TERMINATED"} and len(trials) == 2
    said = first + resumed  # each restored trial's first line, as its node printed it
    assert "from its checkpoint" in said and "restarts from epoch 1" not in said, said[-3000:]
    undisturbed.join(timeout=300)
    for row in trials.itertuples():
        assert_same_metrics(epochs, row.trial_id, reference[float(row.lr)])
    assert all(str(c).startswith(f"{experiment}/checkpoints/") for c in trials["checkpoint"])
    secret = setup.server.env["AWS_SECRET_ACCESS_KEY"].encode()
    written = [p for p in (tmp_path / "copy").rglob("*") if p.is_file()]
    assert written and not any(secret in p.read_bytes() for p in written), "no credential kept"
    assert secret.decode() not in resumed

    env = {**os.environ, **setup.node_env("driver"), "EGOTUNE_CACHE_DIR": str(tmp_path / "c")}
    top = subprocess.run(
        [sys.executable, "-m", "tuner.cli", "results", "top", "grid", "--storage", storage],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert top.returncode == 0, top.stderr
    assert len([line for line in top.stdout.splitlines() if line.startswith("1e-0")]) == 2
    if page is not None:  # the web view, on another machine's cache, reads the same bucket
        shown = ui_trial_ids(storage, "grid", env, page)
        assert shown == set(trials["trial_id"])


def ui_trial_ids(storage: str, name: str, env: dict[str, str], page: Any) -> set[str]:
    """The trial ids ``egotune ui --storage`` shows on the experiment's page (Chromium)."""
    with ui_on(storage, env) as url:
        page.goto(f"{url}/experiments/{name}")
        page.locator("#trials tbody tr").first.wait_for()
        text = page.inner_text("#trials tbody")
    return {word for word in text.split() if "_" in word and word.split("_")[-1].isdigit()}


# -- prefix sharing and PBT across the two nodes ------------------------------------------------


def test_prefix_sharing_on_a_bucket_computes_the_same_metrics(
    setup: Setup, synthetic_root: Path, tmp_path: Path
) -> None:
    fixed = {**TINY, "model": "ego_rnn", "stage": 1, "epochs": 3}
    doc = {  # the second trial branches from the first's state after epoch 2
        "fixed": fixed,
        "grid": {"lr": [1e-2], "milestones": [[2]], "gamma": [0.1, 0.5]},
        "scheduler": {"algorithm": "grid", "max_concurrent": 2},
        "resources": {"cpus": 1, "gpus": 0},
        "share_prefixes": True,
    }
    storage = f"s3://{BUCKET}/{tmp_path.name}"
    space = write_space(tmp_path, "share", doc)
    output = finish(search(setup, str(space), "--data", str(synthetic_root), "--storage",
                           storage, "--name", "share"))  # fmt: skip
    assert "prefix sharing:" in output
    trials, epochs = tables_from_bucket(f"{storage}/share", tmp_path / "copy")
    assert (epochs["computed_by"] != epochs["trial_id"]).any(), "some epochs were shared"
    branches = [f for f in bucket_files(f"{storage}/share") if "/branch-e" in f]
    assert branches, "branch states live in the bucket"
    for row in trials.itertuples():
        milestones = (
            json.loads(row.milestones) if isinstance(row.milestones, str) else list(row.milestones)
        )
        values = {**fixed, "lr": 1e-2, "milestones": milestones, "gamma": float(row.gamma)}
        assert_same_metrics(epochs, row.trial_id, engine_rows(synthetic_root, values))


def test_pbt_on_a_bucket_exploits_exactly_from_states_in_the_bucket(
    setup: Setup, synthetic_root: Path, tmp_path: Path
) -> None:
    fixed = {**TINY, "model": "ego_rnn", "stage": 1, "epochs": 4, "milestones": [4]}
    doc = {
        "fixed": fixed,
        "sample": {"lr": {"loguniform": [1e-4, 3e-2]}},
        "scheduler": {
            "algorithm": "pbt",
            "num_samples": 2,  # one trial per node: the donor is always on the other one
            "quantile_fraction": 0.5,
            "perturbation_interval": 2,
            "mutations": {"lr": {"loguniform": [1e-4, 3e-2]}},
            "seed": 1,
        },
        "resources": {"cpus": 1, "gpus": 0},
    }
    storage = f"s3://{BUCKET}/{tmp_path.name}"
    finish(search(setup, str(write_space(tmp_path, "pbt", doc)), "--data", str(synthetic_root),
                  "--storage", storage, "--name", "pbt"))  # fmt: skip
    experiment = f"{storage}/pbt"
    tables_from_bucket(experiment, tmp_path / "copy")
    exploits = pd.read_parquet(tmp_path / "copy" / "exploits.parquet")
    epochs = pd.read_parquet(tmp_path / "copy" / "epochs.parquet")
    assert len(exploits), "the bottom of the population exploited the top"
    row = exploits.sort_values("epoch").iloc[0]
    epoch = int(row["epoch"])
    pinned = Bucket(f"{experiment}/checkpoints/{row['trial_id']}")
    state_file, local = f"from-{row['donor_id']}-state-e{epoch:05d}.pt", tmp_path / "pinned"
    assert pinned.download(state_file, local / state_file), "the donor's state, pinned"
    state = load_checkpoint(local / state_file)
    best_file = f"from-{row['donor_id']}-{state['best_file']}"
    assert pinned.download(best_file, local / best_file)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(
            TrainConfig.from_dict({**fixed, "lr": float(row["new.lr"])}), discover(synthetic_root)
        )
        trainer.continue_from(state, load_checkpoint(local / best_file)["model"], differing=("lr",))
        record = next(trainer.run())
    finally:
        torch.set_num_threads(threads)
    recorded = epochs.set_index(["trial_id", "epoch"]).loc[(row["trial_id"], epoch + 1)]
    for name in ("train_loss", "val_loss", "val_acc", "lr"):
        assert recorded[name] == pytest.approx(getattr(record, name), rel=1e-6), name


def test_a_prerequisite_run_in_the_bucket_serves_the_trials_and_a_later_search(
    setup: Setup, synthetic_root: Path, tmp_path: Path
) -> None:
    doc = {
        "fixed": {**TINY, "model": "ego_rnn", "stage": 2, "epochs": 1},
        "grid": {"lr": [1e-3, 1e-4]},
        "scheduler": {"algorithm": "grid"},
        "resources": {"cpus": 1, "gpus": 0},
        "prerequisites": {
            "stage1": {
                "provides": "init_checkpoint",
                "config": {"model": "ego_rnn", "stage": 1, "epochs": 1},
            }
        },
    }
    storage = f"s3://{BUCKET}/{tmp_path.name}"
    space = str(write_space(tmp_path, "staged", doc))
    common = ("--data", str(synthetic_root), "--storage", storage)
    first = finish(search(setup, space, *common, "--name", "first"))
    assert "prerequisite stage1: training" in first
    records = [f for f in bucket_files(storage) if f.endswith("prerequisite.json")]
    assert len(records) == 1 and records[0].startswith("_prerequisites/")
    setup.wipe()  # the next search finds the run in the bucket only
    second = finish(search(setup, space, *common, "--name", "second"))
    assert "prerequisite stage1: reusing s3://" in second
    for name in ("first", "second"):
        trials, _ = tables_from_bucket(f"{storage}/{name}", tmp_path / name)
        assert set(trials["status"]) == {"TERMINATED"} and len(trials) == 2
        (handed_on,) = set(trials["init_checkpoint"])
        assert handed_on.startswith(f"{storage}/_prerequisites/") and handed_on.endswith("/best.pt")


# -- faults ----------------------------------------------------------------------------------


def error_line(output: str) -> str:
    """The search's own error: one ``egotune: error:`` line (the trials that failed on the way
    are Tune's console and Ray's worker logs, with their tracebacks, as for any failed trial)."""
    lines = [line for line in output.splitlines() if line.startswith("egotune: error: ")]
    assert len(lines) == 1, output[-3000:]
    return lines[0]


def test_an_endpoint_that_goes_away_stops_the_search_and_resume_completes_it(
    setup: Setup, synthetic_root: Path, tmp_path: Path
) -> None:
    fixed = {**TINY, "crop_size": 96, "frames": 4, "model": "ego_rnn", "stage": 1, "epochs": 6}
    doc = {
        "fixed": {**fixed, "checkpoint_every": 1},
        "grid": {"lr": [1e-3, 1e-4]},
        "scheduler": {"algorithm": "grid"},
        "resources": {"cpus": 1, "gpus": 0},
    }
    storage = f"s3://{BUCKET}/{tmp_path.name}"
    experiment = f"{storage}/outage"
    driver = search(setup, str(write_space(tmp_path, "outage", doc)), "--data",
                    str(synthetic_root), "--storage", storage, "--name", "outage",
                    "--max-failures", "0")  # fmt: skip
    written = lambda: any("state-e00002" in f for f in bucket_files(experiment))  # noqa: E731
    try:
        while_running(driver, written)
        setup.switch.cut()
        try:
            output, _ = driver.communicate(timeout=300)
        finally:
            setup.switch.restore()
    finally:
        driver.kill()
    assert driver.returncode != 0
    said = error_line(output)
    assert f"--storage {experiment}: uploading the tables failed" in said and "resume" in said
    wait_for(lambda: not trial_processes(setup), timeout=60)
    setup.wipe()
    finish(search(setup, "--resume", "outage", "--storage", storage))
    trials, _ = tables_from_bucket(experiment, tmp_path / "copy")
    assert set(trials["status"]) == {"TERMINATED"} and len(trials) == 2
