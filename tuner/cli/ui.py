"""``egotune ui``: browse the experiments of a storage folder in a web page, live while they run.

A read-only web app (``tuner.ui``) on 127.0.0.1 by default. ``--host`` binds another address and
then requires a token (``--token-file``, ``$EGOTUNE_UI_TOKEN``, else a random one printed in the
address to open). On a cluster, run it on the head and forward its port.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tuner.cli._names import storage_location
from tuner.errors import EgotuneError, UsageError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ui",
        help="browse experiments in a web page, live while searches write",
        description=(
            "Browse the experiments of a storage folder in a web page, live while searches "
            "write: trial table, learning curves, pivot heatmap, importance, parallel "
            "coordinates, time per epoch, trial pages. Read-only, on 127.0.0.1 by default; "
            "--host binds another address and then requires a token (--token-file, "
            "$EGOTUNE_UI_TOKEN, else a random one printed in the address to open)."
        ),
    )
    parser.add_argument(
        "--storage",
        type=storage_location,
        metavar="DIR",
        help="results folder or bucket URI, e.g. s3://bucket/prefix, mirrored locally every "
        "--poll seconds (5 at least) (default: $EGOTUNE_STORAGE or ~/egotune-results)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8266,
        metavar="N",
        help="port (default 8266; 0 picks a free one)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="ADDR",
        help="address to bind (default 127.0.0.1); any other one requires a token",
    )
    parser.add_argument(
        "--token-file", type=Path, metavar="PATH", help="file holding the token to require"
    )
    parser.add_argument(
        "--dashboard",
        metavar="URL",
        help="Ray dashboard to link to when it answers (default: $RAY_ADDRESS if http, "
        "else http://127.0.0.1:8265)",
    )
    parser.add_argument(
        "--poll", type=float, default=2.0, metavar="SECONDS", help="how often pages re-read"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from tuner import results, ui

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: expected 0 to 65535")
    if not (math.isfinite(args.poll) and args.poll > 0):
        raise UsageError(f"--poll {args.poll}: must be a finite number of seconds more than 0")
    label = None
    if results.is_uri(args.storage):
        label = str(args.storage)
        storage = results.mirror_storage(label)
        _keep_mirrored(label, max(args.poll, MIN_BUCKET_POLL_S))
    else:
        storage = (args.storage or results.default_storage()).expanduser().resolve()
    ui.serve(
        storage,
        label=label,
        host=args.host,
        port=args.port,
        token=ui.read_token(args.token_file),
        dashboard=args.dashboard,
        poll_s=args.poll,
    )
    return 0


MIN_BUCKET_POLL_S = 5.0
"""Seconds between two reads of a bucket's listing (each a request per experiment folder)."""


def _keep_mirrored(uri: str, every_s: float) -> None:
    """Bring the local mirror of ``uri`` up to date every ``every_s`` seconds, in a daemon
    thread; a failed read is one warning line (once until a read succeeds again)."""
    from tuner import results

    def follow() -> None:
        failing = False
        while True:
            time.sleep(every_s)
            try:
                results.mirror_storage(uri)
            except EgotuneError as exc:
                if not failing:
                    print(f"egotune: warning: {exc}; the pages show the last copy", file=sys.stderr)
                failing = True
            else:
                failing = False

    threading.Thread(target=follow, name="egotune-bucket-mirror", daemon=True).start()
