"""A real S3 API for the tests: moto's server on 127.0.0.1 at a free port, in its own process.

Nothing is mocked inside the test process: egotune reaches it through pyarrow's S3 filesystem
over HTTP, pointed there by ``AWS_ENDPOINT_URL`` with throwaway credentials, as it would reach
an S3-compatible store (MinIO, Ceph) on a cluster.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["S3Server", "s3_server"]


@dataclass
class S3Server:
    endpoint: str
    env: dict[str, str]
    """The variables that point a process at the server."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """Start the server, set the environment for it in this process, stop it at the end."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "egotune-test",
        "AWS_SECRET_ACCESS_KEY": "egotune-test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    before = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("moto's S3 server did not start")
            time.sleep(0.1)
        yield S3Server(endpoint, env)
    finally:
        server.terminate()
        server.wait(timeout=10)
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
