"""``egotune search --storage s3://...`` refused in one line before Ray starts: a bucket that does
not exist, an endpoint that does not answer, credentials that are missing or wrong (a moto server
that checks them), against a real S3 API (tests/s3_server.py). With the cluster searches of
``test_bucket.py`` in ``make test-bucket``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
import yaml

from tests.conftest import tiny_config_values
from tests.s3_server import S3Server, s3_server

BUCKET = "egotune-refusals"
SECRET = "egotune-secret-never-shown"
pytestmark = pytest.mark.bucket

TINY = {k: v for k, v in tiny_config_values().items() if k not in ("stage1", "device")}


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with s3_server() as running:
        filesystem = pafs.S3FileSystem(
            endpoint_override=running.endpoint, region="us-east-1", allow_bucket_creation=True
        )
        filesystem.create_dir(BUCKET)
        yield running


def write_space(folder: Path) -> Path:
    path = folder / "g.yaml"
    path.write_text(yaml.safe_dump({"fixed": {**TINY, "model": "ego_rnn", "stage": 1}}))
    return path


def search(space: Path, data: Path, storage: str, env: dict[str, str]) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "tuner.cli", "search", str(space), "--data", str(data),
         "--storage", storage, "--name", "refused"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("storage", "env", "says"),
    [
        ("s3://no-such-bucket-here/runs", {}, "no such bucket"),
        (f"s3://{BUCKET}/x", {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, "cannot reach it"),
    ],
    ids=["missing-bucket", "unreachable-endpoint"],
)
def test_a_bucket_a_search_cannot_use_is_one_line_before_ray_starts(
    server: S3Server, synthetic_root: Path, tmp_path: Path, storage: str, env: dict, says: str
) -> None:
    scratch = {"EGOTUNE_SCRATCH_DIR": str(tmp_path / "scratch")}
    environment = {**os.environ, **server.env, **scratch, **env}
    done = search(write_space(tmp_path), synthetic_root, storage, environment)
    assert done.returncode != 0
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"egotune: error: --storage {storage}: ") and says in line, line


@pytest.mark.parametrize(
    "credentials",
    [
        {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
        {"AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG0", "AWS_SECRET_ACCESS_KEY": SECRET},
    ],
    ids=["missing", "wrong"],
)
def test_credentials_the_bucket_refuses_are_one_line(
    synthetic_root: Path, tmp_path: Path, credentials: dict[str, str], request: Any
) -> None:
    nowhere = str(tmp_path / "none")  # no credentials file, no config file either
    with s3_server(authenticate=True) as guarded:
        env = {**os.environ, **guarded.env, "EGOTUNE_SCRATCH_DIR": str(tmp_path / "scratch")}
        env.update(AWS_SHARED_CREDENTIALS_FILE=nowhere, AWS_CONFIG_FILE=nowhere)
        for key, value in credentials.items():
            env.pop(key) if not value else env.update({key: value})
        done = search(write_space(tmp_path), synthetic_root, f"s3://{BUCKET}/x", env)
    assert done.returncode != 0
    (line,) = done.stderr.strip().splitlines()
    said = {"missing": "no credentials were found", "wrong": "access refused: check the"}
    assert line.startswith(f"egotune: error: --storage s3://{BUCKET}/x: "), line
    assert said[request.node.callspec.id] in line, line
    assert SECRET not in done.stderr + done.stdout
