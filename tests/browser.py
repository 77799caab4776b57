"""Debian's Chromium for the tests that look at pages (playwright drives it; nothing is
downloaded)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


@contextlib.contextmanager
def ui_on(storage: str, env: dict[str, str], *flags: str) -> Iterator[str]:
    """``egotune ui --storage STORAGE`` on a free port of 127.0.0.1 (no dashboard link), in a
    subprocess with ``env``; yields its URL and stops it at the end."""
    ui = subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", "ui", "--storage", storage, "--port", "0",
         "--dashboard", "http://127.0.0.1:9", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert ui.stdout is not None
        line = ui.stdout.readline()
        assert line.startswith(f"egotune ui: {storage} at http://127.0.0.1:"), line
        yield line.split(" at ", 1)[1].split()[0].rstrip("/")
    finally:
        ui.terminate()
        ui.wait(10)
