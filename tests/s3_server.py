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
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["S3Server", "Switch", "s3_server"]


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
def s3_server(*, authenticate: bool = False) -> Iterator[S3Server]:
    """Start the server, set the environment for it in this process, stop it at the end;
    ``authenticate``: the server checks every request's credentials (moto's IAM mode, where no
    key is known), as a real bucket refuses a caller without valid ones."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server_env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"} if authenticate else None
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=server_env,
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


class Switch:
    """A TCP relay from a port of its own to ``target``, which the test can cut and restore: an
    endpoint that goes away (connections refused, open ones reset) and comes back, with the
    server's data intact behind it."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self.restore()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._open = self._open, []
        if listener is not None:
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
