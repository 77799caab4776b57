"""An experiment is run by one search at a time: the claim on its folder.

A search takes the claim before it starts Ray and holds it until it ends. Two searches given the
same ``--name``, or two ``--resume`` of one experiment, would otherwise both write its tables (one
search's trials vanished, or every row twice). The claim is:

* **the folder itself** for a new experiment: ``mkdir`` succeeds for one caller only, so of two
  searches started at once with one name the second is refused (a default name takes the next
  free suffix instead);
* **an exclusive ``flock``** on ``<experiment>/.owner.lock``, held for the whole search. The kernel
  drops it when its holder dies, however it dies, so a claim never goes stale: the next search
  takes it over. ``<experiment>/.owner.json`` names the holder (host, process, start time,
  command), which is what a refused search prints.

``flock`` works on a local disk and on NFSv4 (as a POSIX lock, released by the server when the
client's lease lapses, about 90 s after a node is lost).

An object store has no lock, so a search on a bucket holds a **lease** (:class:`BucketLease`):
``<experiment>/.owner.json`` in the bucket names the holder and the time it last renewed it, every
:data:`LEASE_RENEW_S` seconds. Another search refuses the experiment while the lease is younger
than :data:`LEASE_S` (on the holder's own host: while its process lives), and takes it over
after that (its holder died). Two searches started within
the same second with one new name could both write the record; the later one then sees the
other's record when it reads it back, and stops.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner.atomic import write_json_atomic
from tuner.errors import UsageError
from tuner.storage import Bucket

__all__ = [
    "LEASE_RENEW_S",
    "LEASE_S",
    "LOCK_FILE",
    "OWNER_FILE",
    "BucketLease",
    "ExperimentClaim",
    "claim_new_experiment",
    "describe",
]

LOCK_FILE = ".owner.lock"
OWNER_FILE = ".owner.json"
_SUFFIXES = 1000
LEASE_RENEW_S = 20.0
"""Seconds between two renewals of a search's lease on a bucket's experiment."""
LEASE_S = 90.0
"""Age after which a lease counts as its holder's death."""


@dataclass
class ExperimentClaim:
    """This process's claim on an experiment folder; :meth:`release` ends it."""

    folder: Path
    previous: dict[str, Any] | None
    """The record of a search that held the claim and is gone (``--resume`` after a kill)."""
    _fd: int

    @classmethod
    def take(cls, folder: Path) -> ExperimentClaim:
        """The claim on an existing experiment folder; refused (``UsageError``) while another
        process holds it."""
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(
                f"experiment {folder.name} is being run by {describe(read_owner(folder))}; "
                "wait for it to end or stop it (Ctrl-C) before running it again"
            ) from None
        previous = read_owner(folder)
        write_json_atomic(folder / OWNER_FILE, _me())
        return cls(folder, previous, fd)

    def release(self) -> None:
        """End the claim. The lock file stays: a process waiting on it must not lock a file
        that another one is about to create anew."""
        (self.folder / OWNER_FILE).unlink(missing_ok=True)
        os.close(self._fd)

    def __enter__(self) -> ExperimentClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_new_experiment(storage: Path, name: str, *, default: bool) -> ExperimentClaim:
    """Create the folder of a new experiment and claim it. An explicit name that exists is
    refused; a default name takes the first free ``-2``, ``-3``, ... suffix."""
    for suffix in range(1, _SUFFIXES + 1):
        folder = storage / (name if suffix == 1 else f"{name}-{suffix}")
        try:
            folder.mkdir()
        except FileExistsError:
            if default:
                continue
            owner = read_owner(folder)
            running = f" and is being run by {describe(owner)}" if owner else ""
            raise UsageError(
                f"--name {name}: {folder} already exists{running}; pass --resume to continue "
                "it or choose another name"
            ) from None
        return ExperimentClaim.take(folder)
    raise UsageError(f"--name: {storage} holds {_SUFFIXES} experiments named {name}-N; pass one")


def read_owner(folder: Path) -> dict[str, Any] | None:
    """The record of the claim's holder (or of the last one, if it died), or ``None``."""
    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def describe(owner: dict[str, Any] | None) -> str:
    """``process 4242 on host node-1 since 2026-12-04 21:30:05 UTC (egotune search ...)``."""
    if not owner:
        return "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(owner.get("started", 0)))
    command = f" ({owner['command']})" if owner.get("command") else ""
    return f"process {owner.get('pid')} on host {owner.get('host')} since {started}{command}"


def _me() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.time(),
        "command": " ".join(["egotune", *sys.argv[1:]])[:300],
    }


class BucketLease:
    """This search's lease on experiment ``name`` in a bucket (see the module docstring)."""

    def __init__(self, root: Bucket, name: str, previous: dict[str, Any] | None) -> None:
        self.name = name
        self.bucket = root.child(name)
        self.previous = previous
        """The record of a holder that stopped renewing it (``--resume`` after a kill)."""
        self._record = {**_me(), "token": uuid.uuid4().hex}
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @classmethod
    def new(cls, root: Bucket, name: str, *, default: bool) -> BucketLease:
        """The lease on a new experiment: an explicit name that exists in the bucket is
        refused, a default one takes the first free ``-2``, ``-3``, ... suffix."""
        for suffix in range(1, _SUFFIXES + 1):
            candidate = name if suffix == 1 else f"{name}-{suffix}"
            if root.child(candidate).exists():
                if default:
                    continue
                raise UsageError(
                    f"--name {name}: {root.uri}/{name} already exists; pass --resume to continue "
                    "it or choose another name"
                )
            return cls(root, candidate, None)._hold()
        raise UsageError(f"--name: {root.uri} holds {_SUFFIXES} experiments named {name}-N")

    @classmethod
    def take(cls, root: Bucket, name: str) -> BucketLease:
        """The lease on an existing experiment; refused while its holder renews it."""
        owner = _read_lease(root.child(name))
        if owner is not None and _held(owner):
            raise UsageError(
                f"experiment {name} is being run by {describe(owner)} (its lease in {root.uri} "
                f"was renewed {time.time() - float(owner.get('renewed', 0)):.0f} s ago); wait "
                "for it to end or stop it before running it again"
            )
        return cls(root, name, owner)._hold()

    def _hold(self) -> BucketLease:
        self._write()
        mine = _read_lease(self.bucket)
        if not mine or mine.get("token") != self._record["token"]:
            raise UsageError(
                f"experiment {self.name} in {self.bucket.uri} was just taken by "
                f"{describe(mine)}; choose another name"
            )
        self._renewer = threading.Thread(target=self._renew, name="egotune-lease", daemon=True)
        self._renewer.start()
        return self

    def _write(self) -> None:
        self._record["renewed"] = time.time()
        self.bucket.write_bytes(OWNER_FILE, json.dumps(self._record).encode())

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_RENEW_S):
            try:
                self._write()
            except OSError as exc:  # the bucket is unreachable for now: try again later
                print(f"egotune: warning: renewing the lease failed ({exc})", file=sys.stderr)

    def release(self) -> None:
        """End the lease: its record goes (a new experiment's folder held nothing else)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        with contextlib.suppress(OSError):  # else it lapses on its own
            self.bucket.delete(OWNER_FILE)


def _held(owner: dict[str, Any]) -> bool:
    """The lease's holder may still be running: it renewed the lease less than :data:`LEASE_S`
    ago and, on this host, its process is alive."""
    if time.time() - float(owner.get("renewed", 0)) >= LEASE_S:
        return False
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(owner.get("pid", 0)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


def _read_lease(bucket: Bucket) -> dict[str, Any] | None:
    try:
        data = bucket.read_bytes(OWNER_FILE)
        owner = json.loads(data) if data else None
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None
