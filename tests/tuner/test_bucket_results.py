"""``egotune results ... --storage s3://bucket/prefix``: an experiment in a bucket, read on a
machine that shares no folder with the search, against a real S3 API (tests/s3_server.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from tests.browser import ui_on
from tests.s3_server import S3Server, s3_server

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "saved-experiment"
NAME = FIXTURE.name
BUCKET = "egotune-results"

pytestmark = pytest.mark.bucket


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with s3_server() as running:
        yield running


@pytest.fixture
def bucket(server: S3Server, tmp_path: Path) -> str:
    """``s3://egotune-results/<test>/`` holding the saved experiment, checkpoints and all."""
    filesystem = pafs.S3FileSystem(
        endpoint_override=server.endpoint, region="us-east-1", allow_bucket_creation=True
    )
    prefix = f"{BUCKET}/{tmp_path.name}"
    if filesystem.get_file_info(BUCKET).type == pafs.FileType.NotFound:
        filesystem.create_dir(BUCKET)
    pafs.copy_files(str(FIXTURE), f"{prefix}/{NAME}", destination_filesystem=filesystem)
    return f"s3://{prefix}"


def _egotune(tmp_path: Path, server: S3Server, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**server.env, "EGOTUNE_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "tuner.cli", *argv], capture_output=True, text=True, env=env
    )


def test_results_read_an_experiment_from_a_bucket_as_from_a_folder(
    bucket: str, server: S3Server, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    shutil.copytree(FIXTURE, local / NAME)
    for command in (["top", NAME], ["pivot", NAME, "--rows", "lr", "--cols", "gamma"]):
        remote = _egotune(tmp_path, server, "results", *command, "--storage", bucket)
        here = _egotune(tmp_path, server, "results", *command, "--storage", str(local))
        assert remote.returncode == 0, remote.stderr
        assert remote.stdout == here.stdout
    listed = _egotune(tmp_path, server, "results", "list", "--storage", bucket, "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["experiment"] == NAME and row["trials"] == 2  # updated_at: the upload's time
    mirrored = tmp_path / "cache" / "storage" / "s3" / BUCKET / tmp_path.name / NAME
    assert (mirrored / "trials.parquet").is_file()
    assert not (mirrored / "checkpoints").exists(), "the tables only, never the checkpoints"


def test_a_part_added_to_the_bucket_is_read_at_the_next_command(
    bucket: str, server: S3Server, tmp_path: Path
) -> None:
    first = _egotune(tmp_path, server, "results", "top", NAME, "--storage", bucket, "--json")
    assert first.returncode == 0, first.stderr
    filesystem, prefix = pafs.FileSystem.from_uri(f"{bucket}/{NAME}")
    trials = f"{prefix}/trials.parquet"
    filesystem.delete_file(trials)  # as a resumed search rewrites it: here, with no trial
    second = _egotune(tmp_path, server, "results", "list", "--storage", bucket, "--json")
    assert second.returncode == 0, second.stderr
    (row,) = json.loads(second.stdout)
    assert row["trials"] == 0


@pytest.mark.parametrize(
    ("storage", "says"),
    [
        ("s3://no-such-bucket/runs", "--storage s3://no-such-bucket/runs: "),
        ("s3://egotune-results/no/such/prefix", "no such bucket or prefix"),
    ],
)
def test_a_bucket_or_prefix_that_is_not_there_is_one_line(
    bucket: str, server: S3Server, tmp_path: Path, storage: str, says: str
) -> None:
    done = _egotune(tmp_path, server, "results", "list", "--storage", storage)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("egotune: error: --storage ") and says in line


def test_an_endpoint_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x"}
    down = S3Server("http://127.0.0.1:9", {**env, "AWS_SECRET_ACCESS_KEY": "x"})
    done = _egotune(tmp_path, down, "results", "list", "--storage", "s3://bucket/runs")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("egotune: error: --storage s3://bucket/runs: cannot reach it (")


def test_the_ui_shows_an_experiment_of_a_bucket_and_follows_it(
    bucket: str, server: S3Server, tmp_path: Path, page
) -> None:
    env = {**server.env, "EGOTUNE_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    with ui_on(bucket, env, "--poll", "0.5") as url:
        page.goto(f"{url}/experiments/{NAME}")
        page.locator("#trials tbody tr").first.wait_for()
        shown = page.eval_on_selector_all("#trials tbody tr", "rows => rows.length")
        filesystem, prefix = pafs.FileSystem.from_uri(bucket)
        pafs.copy_files(
            str(FIXTURE), f"{prefix}/second", destination_filesystem=filesystem
        )  # another experiment written to the bucket while the page is open
        page.goto(url)
        page.wait_for_function(
            "document.body.innerText.includes('second')", timeout=30_000, polling=500
        )
    assert shown == 2
