"""Driver-kill drills: an ``egotune search`` subprocess killed with SIGKILL, then resumed, or
stopped with SIGINT as by Ctrl-C.

The search runs in its own process group (``python -m tuner.cli search``), either on a local
Ray it starts itself or, with ``address``, on a running cluster (the test's own local Ray), as
a researcher's search on a shared cluster. :func:`kill_search_when` kills the driver alone, as
``kill -9 <pid>`` would, once ``ready()`` holds, then the rest of its group (the local Ray it
started, if any; a cluster removes the trials of a dead driver itself);
:func:`resume_search` runs ``egotune search --resume`` to the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from data_pipeline import discover
from tuner.training.config import TrainConfig
from tuner.training.engine import TIME_FIELDS, EpochRecord, Trainer
from tuner.training.fidelity import FidelitySchedule

METRICS = [f.name for f in fields(EpochRecord) if f.name not in TIME_FIELDS]
"""The epoch-row fields an exact run reproduces (times aside)."""

SEARCH = [sys.executable, "-m", "tuner.cli", "search"]


def wait_for(condition: Callable[[], Any], timeout: float = 300.0, every: float = 0.05) -> Any:
    """The first truthy value of ``condition()``, polled every ``every`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not reached")


def kill_search_when(
    space: Path,
    data: Path,
    storage: Path,
    name: str,
    ready: Callable[[], bool],
    address: str | None = None,
) -> None:
    """Start the search ``name`` and SIGKILL it once ``ready()`` holds (it must still run)."""
    first = _start(space, data, storage, name, address, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: ready() or first.poll() is not None, every=0.2)
        assert first.poll() is None, first.stderr.read().decode()[-3000:] if first.stderr else ""
        first.send_signal(signal.SIGKILL)  # the driver only, as `kill -9 <pid>` would
        first.wait(timeout=30)
    finally:
        time.sleep(1)
        with contextlib.suppress(ProcessLookupError):  # a driver that failed left no group
            os.killpg(first.pid, signal.SIGKILL)  # then what it started (its local Ray)


def interrupt_search_when(
    space: Path,
    data: Path,
    storage: Path,
    name: str,
    ready: Callable[[], bool],
    address: str | None = None,
) -> tuple[int, str, str]:
    """Start the search ``name``, send its driver SIGINT (Ctrl-C) once ``ready()`` holds and
    wait for it to end by itself; returns its exit status, stdout and stderr."""
    search = _start(space, data, storage, name, address, stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: ready() or search.poll() is not None, every=0.2)
        assert search.poll() is None, "the search ended before it could be interrupted"
        search.send_signal(signal.SIGINT)  # the driver only, as Ctrl-C in its shell would
        out, err = search.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(search.pid, signal.SIGKILL)
    return search.returncode, out, err


def resume_search(storage: Path, name: str, address: str | None = None) -> str:
    """``egotune search --resume name`` to the end; it must succeed. Returns its console
    (stdout, then stderr)."""
    resumed = subprocess.run(
        [*SEARCH, "--resume", name, "--storage", str(storage), *_address(address)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return resumed.stdout + resumed.stderr


def _start(
    space: Path, data: Path, storage: Path, name: str, address: str | None, **popen: Any
) -> subprocess.Popen[Any]:
    """``egotune search`` of ``space`` in a process group of its own (stderr piped)."""
    argv = [*SEARCH, str(space), "--data", str(data), "--storage", str(storage), "--name", name]
    return subprocess.Popen(
        [*argv, *_address(address)], stderr=subprocess.PIPE, start_new_session=True, **popen
    )


def _address(address: str | None) -> list[str]:
    return ["--address", address] if address else []


def undisturbed_records(
    root: Path, values: dict, fidelity: FidelitySchedule | None = None
) -> pd.DataFrame:
    """The configuration ``values`` run straight through by the engine on the dataset at
    ``root`` (under the fidelity schedule ``fidelity``), one thread like a one-CPU trial: the
    metrics a disturbed search must reproduce."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(TrainConfig.from_dict(values), discover(root), fidelity=fidelity)
        rows = [record.to_dict() for record in trainer.run()]
    finally:
        torch.set_num_threads(threads)
    frame = pd.DataFrame(rows)
    return frame[[name for name in METRICS if name in frame.columns]]
