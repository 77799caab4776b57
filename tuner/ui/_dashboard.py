"""Whether the Ray dashboard answers, so the pages link to it only when the link would work."""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

__all__ = ["DashboardProbe", "default_dashboard_url"]

_DEFAULT = "http://127.0.0.1:8265"


def default_dashboard_url() -> str:
    """``$RAY_ADDRESS`` when it is the dashboard's http(s) address, else Ray's default one."""
    address = os.environ.get("RAY_ADDRESS", "")
    return address.rstrip("/") if urlsplit(address).scheme in ("http", "https") else _DEFAULT


class DashboardProbe:
    """Asks ``url`` whether it is up at most every ``every_s`` seconds; any HTTP answer counts
    (one asking for Ray's token too), a refused or silent port does not."""

    def __init__(self, url: str | None, *, every_s: float = 30.0, timeout_s: float = 0.5) -> None:
        if url is not None and urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"--dashboard {url}: expected an http:// or https:// address")
        self.url = url.rstrip("/") if url else None
        self._every_s, self._timeout_s = every_s, timeout_s
        self._checked_at, self._up = -float("inf"), False
        self._lock = threading.Lock()

    def reachable_url(self) -> str | None:
        """The dashboard's address when it answered the latest check, else ``None``."""
        if self.url is None:
            return None
        with self._lock:
            if time.monotonic() - self._checked_at >= self._every_s:
                self._up = self._answers(self.url + "/api/version")
                self._checked_at = time.monotonic()
            return self.url if self._up else None

    def _answers(self, url: str) -> bool:
        # no proxy: the dashboard is asked from this machine, as the link is meant to be followed
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(url, timeout=self._timeout_s):  # scheme checked in __init__
                return True
        except urllib.error.HTTPError:
            return True
        except (OSError, ValueError):
            return False
