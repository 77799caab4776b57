"""Connecting to Ray: a local cluster by default, an existing one with ``--address``.

The local dashboard listens on 127.0.0.1 unless asked otherwise, and Ray's token authentication is
left as Ray configures it (on by default for local clusters in this Ray version). An unreachable
``--address`` and a per-trial resource request that fits no node are reported before any trial is
queued, instead of a driver that hangs or trials that stay PENDING forever.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner.errors import EgotuneError, UsageError

__all__ = [
    "RaySession",
    "connect",
    "job_client",
    "node_shapes",
    "ray_running",
    "stop_ray",
    "use_token_when_available",
]

_DEFAULT_GCS_PORT = 6379


@dataclass
class RaySession:
    """The Ray cluster this process is connected to."""

    address: str
    dashboard_url: str | None
    started_here: bool

    def shutdown(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()


def connect(
    address: str | None,
    *,
    num_cpus: int | None = None,
    dashboard_host: str = "127.0.0.1",
    include_dashboard: bool = True,
) -> RaySession:
    """Start a local Ray (``address=None``) or join the cluster at ``address``.

    Inside a Ray job (``egotune submit``, ``ray job submit``) Ray sets ``RAY_ADDRESS``: the search
    then joins the job's cluster instead of starting a local one.
    """
    import ray

    if address is None and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]
    if address is not None and address != "auto":
        _check_reachable(address)
    if ray.is_initialized():  # a library caller connected already
        context = ray.get_runtime_context()
        return RaySession(context.gcs_address, _dashboard_url(None), started_here=False)
    if address is not None:
        use_token_when_available()
    # Workers log at WARNING too: Tune's INFO line per checkpoint ("Checkpoint successfully
    # created at ...") would otherwise reach the console once per epoch and trial.
    kwargs: dict[str, Any] = {
        "logging_level": "WARNING",
        "log_to_driver": True,
        "logging_config": ray.LoggingConfig(log_level="WARNING"),
    }
    if address is None:
        _quiet_token_notice()
        kwargs.update(
            num_cpus=num_cpus,
            include_dashboard=include_dashboard,
            dashboard_host=dashboard_host,
        )
    else:
        kwargs["address"] = address
    try:
        info = ray.init(**kwargs)
    except ConnectionError as exc:
        raise EgotuneError(f"--address {address}: cannot connect to Ray ({exc})") from None
    return RaySession(
        address=ray.get_runtime_context().gcs_address,
        dashboard_url=_dashboard_url(info),
        started_here=address is None,
    )


def _quiet_token_notice() -> None:
    """Drop Ray's notice that a local cluster uses the token it found in ``~/.ray/auth_token``
    (it is the safe default and needs nothing from the user); its warning that a cluster runs
    without a token still shows."""
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _TokenNoticeFilter) for f in notice.filters):
        notice.addFilter(_TokenNoticeFilter())


class _TokenNoticeFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


def use_token_when_available() -> None:
    """Send the cluster's auth token when one is configured and no mode was chosen explicitly.

    A head started with ``ray start --head`` has token authentication on by default in this Ray
    version, but a client with ``RAY_AUTH_MODE`` unset is refused; the token comes from
    ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``, as Ray reads it. Ray
    reads the mode when it is first imported, so the CLI calls this before anything imports ray.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def _dashboard_url(info: Any) -> str | None:
    url = getattr(info, "dashboard_url", None) if info is not None else None
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"


def _check_reachable(address: str) -> None:
    """Fail in seconds, naming the flag, when nothing listens at ``address``."""
    target = address.removeprefix("ray://")
    host, _, port_text = target.rpartition(":")
    if not host:
        host, port_text = target, str(_DEFAULT_GCS_PORT)
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"--address {address}: expected HOST:PORT (e.g. 127.0.0.1:6379)") from None
    try:
        with socket.create_connection((host, port), timeout=5):
            pass
    except OSError as exc:
        raise EgotuneError(
            f"--address {address}: no Ray head answers there ({exc.strerror or exc}); "
            "start one with `ray start --head` or check the address"
        ) from None


def node_shapes() -> list[dict[str, float]]:
    """Resources of each alive node and of each node type the autoscaler may add."""
    import ray

    shapes = [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # private API: without it, only the running nodes count
        config = None
    if config is not None:
        shapes += [
            {key: float(value) for key, value in group.resources.items()}
            for group in config.node_group_configs
            if group.max_count != 0
        ]
    return shapes


def ray_running() -> bool:
    """This process is connected to a Ray cluster (without importing ray when it is not)."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def stop_ray() -> None:
    """Disconnect (and stop a local Ray this process started)."""
    import ray

    ray.shutdown()


def job_client(address: str) -> Any:
    """Ray's Jobs API client of the cluster whose dashboard is ``address``."""
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError) as exc:
        raise EgotuneError(
            f"--address {address}: no Ray Jobs API answers there ({exc}); pass the head's "
            "dashboard URL (port 8265 by default)"
        ) from None
