"""A real multi-node Ray cluster on loopback, started the way Ray documents it.

``ray start --head`` and ``ray start --address`` run with ``--block`` in their own process
groups, so a node is removed (or the whole cluster stopped) by signalling exactly its processes:
nothing here runs ``ray stop``, which would also stop unrelated clusters on the machine. The head
keeps its session files in a temporary folder of its own. Token authentication stays on, as Ray
configures it for ``ray start``; every process started here gets ``RAY_AUTH_MODE=token``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
READY = "Ray runtime started."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cluster_env() -> dict[str, str]:
    """Environment of every node and client: token auth, no usage stats, this venv first."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_USAGE_STATS_ENABLED": "0",
        # workers export their metrics every 2 s instead of 10: a short search is seen running
        "RAY_metrics_report_interval_ms": "2000",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }


@dataclass
class RayNode:
    """One ``ray start --block`` process and the process group it leads."""

    process: subprocess.Popen[bytes]
    log: Path
    resources: dict[str, float] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal every process of this node (its group), as if the machine went away."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)


class LoopbackCluster:
    """A head node (optionally with dashboard and metrics) plus worker nodes on 127.0.0.1."""

    def __init__(
        self,
        *,
        head_cpus: float = 1,
        head_resources: dict[str, float] | None = None,
        dashboard: bool = False,
        startup_timeout: float = 180.0,
        head_env: dict[str, str] | None = None,
    ) -> None:
        self.temp_dir = Path(tempfile.mkdtemp(prefix="egoray-", dir="/tmp"))
        self.port = free_port()
        self.dashboard_port = free_port() if dashboard else None
        self.metrics_port = free_port()
        self.startup_timeout = startup_timeout
        self.nodes: list[RayNode] = []
        args = [
            "--head",
            f"--port={self.port}",
            f"--temp-dir={self.temp_dir}",
            f"--metrics-export-port={self.metrics_port}",
            f"--ray-client-server-port={free_port()}",
        ]
        if dashboard:
            args += [
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
            ]
        else:
            args.append("--include-dashboard=false")
        self.head = self._start(args, head_cpus, head_resources or {}, head_env or {})

    @property
    def address(self) -> str:
        """GCS address, what ``egotune search --address`` takes."""
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard_url(self) -> str:
        if self.dashboard_port is None:
            raise RuntimeError("this cluster was started without a dashboard")
        return f"http://127.0.0.1:{self.dashboard_port}"

    def add_node(
        self,
        cpus: float = 1,
        resources: dict[str, float] | None = None,
        env: dict[str, str] | None = None,
    ) -> RayNode:
        """Start a worker node that joins the head (``env``: variables of this node only, which
        its trial workers inherit)."""
        args = [f"--address={self.address}", f"--metrics-export-port={free_port()}"]
        return self._start(args, cpus, resources or {}, env or {})

    def remove_node(self, node: RayNode) -> None:
        """Kill every process of ``node`` with SIGKILL (a lost machine, not a clean exit)."""
        node.kill(signal.SIGKILL)
        node.process.wait(timeout=30)

    def metrics_endpoints(self) -> list[str]:
        """Every node's Prometheus endpoint, from the file Ray writes for Prometheus discovery."""
        path = self.temp_dir / "prom_metrics_service_discovery.json"
        try:
            groups = json.loads(path.read_text())
        except (OSError, ValueError):
            return [f"127.0.0.1:{self.metrics_port}"]
        return [target for group in groups for target in group.get("targets", [])]

    def shutdown(self) -> None:
        """Kill every node's processes (``ray start --block`` does not exit on SIGTERM within
        seconds, and a test cluster keeps nothing worth a clean stop)."""
        for node in reversed(self.nodes):
            node.kill(signal.SIGKILL)
        for node in reversed(self.nodes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=10)
        self._kill_strays()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _start(
        self, args: list[str], cpus: float, resources: dict[str, float], env: dict[str, str]
    ) -> RayNode:
        log = self.temp_dir / f"node-{len(self.nodes)}.log"
        command = [str(RAY), "start", "--block", "--disable-usage-stats", f"--num-cpus={cpus:g}"]
        # every node of this machine needs ports of its own (the defaults would collide)
        command += [
            f"--{flag}={free_port()}"
            for flag in (
                "node-manager-port",
                "object-manager-port",
                "dashboard-agent-listen-port",
                "dashboard-agent-grpc-port",
                "runtime-env-agent-port",
            )
        ]
        if resources:
            command.append(f"--resources={json.dumps(resources)}")
        with log.open("wb") as out:
            process = subprocess.Popen(
                command + args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**cluster_env(), **env},
                start_new_session=True,
            )
        node = RayNode(process, log, {"CPU": cpus, **resources})
        self.nodes.append(node)
        deadline = time.monotonic() + self.startup_timeout
        while READY not in log.read_text(errors="replace"):
            if not node.alive() or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                self.shutdown()
                raise RuntimeError(f"ray start {' '.join(args)} did not come up:\n{tail}")
            time.sleep(0.5)
        return node

    def _kill_strays(self) -> None:
        """Processes that left their group but still belong to this cluster's session folder."""
        marker = str(self.temp_dir).encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if marker in (proc / "cmdline").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue
