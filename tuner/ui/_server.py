"""Serving the app: the bound address, the token rule, uvicorn."""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from tuner.errors import EgotuneError, UsageError
from tuner.ui._app import create_app, read_ahead
from tuner.ui._dashboard import default_dashboard_url

__all__ = ["DEFAULT_PORT", "TOKEN_ENV", "is_loopback", "read_token", "serve"]

DEFAULT_PORT = 8266
"""Next to the Ray dashboard's 8265."""
_ANY_ADDRESS = ("0.0.0.0", "::", "[::]")  # noqa: S104 (only compared with, to print a name)
TOKEN_ENV = "EGOTUNE_UI_TOKEN"  # noqa: S105 (the variable's name)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(token_file: Path | None) -> str | None:
    """The token in ``token_file``, else in ``$EGOTUNE_UI_TOKEN``, else ``None``."""
    if token_file is not None:
        try:
            token = token_file.expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"--token-file {token_file}: {exc.strerror or exc}") from None
        if not token:
            raise UsageError(f"--token-file {token_file}: the file is empty")
        return token
    return os.environ.get(TOKEN_ENV, "").strip() or None


def serve(
    storage: Path,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
    dashboard: str | None = None,
    poll_s: float = 2.0,
    say: Callable[[str], None] | None = None,
    label: str | None = None,
) -> None:
    """Serve the experiments of ``storage`` until interrupted.

    On a loopback address the token is optional; on any other one it is required, and a random
    one is made (and printed in the address to open) when none is given. ``label`` names the
    storage in the first line instead of ``storage`` (a bucket whose mirror this is).
    """
    if not is_loopback(host) and token is None:
        token = secrets.token_urlsafe(24)
    app = create_app(
        storage,
        token=token,
        dashboard=dashboard or default_dashboard_url(),
        poll_s=poll_s,
        hosts=(f"[{host.strip('[]')}]" if ":" in host else host,),
    )
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    shown = socket.gethostname() if host in _ANY_ADDRESS else host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{bound}/" + (f"?token={token}" if token else "")
    (say or _say)(f"egotune ui: {label or storage} at {url} (read-only; Ctrl-C stops)")
    threading.Thread(target=read_ahead, args=(app.state.cache,), daemon=True).start()
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


def _say(text: str) -> None:
    print(text, flush=True)  # at once, also into a pipe or a log file


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host.strip("[]"), port), family=family)
    except OSError as exc:
        raise EgotuneError(
            f"--host {host} --port {port}: {exc.strerror or exc} "
            "(another port with --port, or --port 0 for any free one)"
        ) from None
