"""Two lanes for a parallel run (``pytest -n 2``, what ``make test`` runs).

Every test that runs Ray (it asks for a Ray fixture, or it is marked ``ray``: it starts Ray
processes of its own, a cluster or a search in a fresh interpreter) goes to one worker, which
runs them in collection order: one Ray at a time, as in a serial run, so that trials and fault
drills never share the cores with another Ray's trials. The other worker runs every other test
meanwhile, at a lower CPU priority (``nice`` 10): the Ray lane is the longer one, and its drills
wait on real processes.

pytest-xdist schedules by node id in the controller, which collects nothing; the workers write
the node ids of the Ray lane into a folder they share with it (``EGOTUNE_TEST_LANES``), and the
controller's scheduler reads them once every worker has collected (xdist schedules only then).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tuner.atomic import write_json_atomic

RAY_FIXTURES = frozenset({"local_ray", "local_ray_address", "own_ray_cluster"})
RAY_LANE = "ray-lane"
LANES_ENV = "EGOTUNE_TEST_LANES"
RAY_WORKER_NICENESS = "RAY_worker_niceness"


def uses_ray(item: pytest.Item) -> bool:
    """A test that runs Ray: it asks for one of the Ray fixtures, or it is marked ``ray``."""
    names = set(getattr(item, "fixturenames", ()))
    return bool(names & RAY_FIXTURES) or item.get_closest_marker("ray") is not None


def in_lanes(config: pytest.Config) -> bool:
    """A worker of a run whose controller schedules by lanes."""
    return hasattr(config, "workerinput") and bool(os.environ.get(LANES_ENV))


def prepare(config: pytest.Config) -> None:
    """In the controller of a ``-n`` run: the folder the workers report their Ray lane to
    (workers start after this and inherit it).

    Ray runs its workers, the trials, at ``nice`` 15 by default (the raylet's ``worker_niceness``):
    below the other lane's ``nice`` 10, which would then take the cores from the Ray lane's trials.
    Ray started by any test of this run (a local Ray, a search's, a cluster's nodes) runs them at
    the Ray lane's priority instead."""
    if _schedules_by_lanes(config) and not hasattr(config, "workerinput"):
        os.environ[LANES_ENV] = tempfile.mkdtemp(prefix="egotune-test-lanes-")
        os.environ.setdefault(RAY_WORKER_NICENESS, "0")


def finish(config: pytest.Config) -> None:
    """In the controller, at the end: remove the workers' reports."""
    folder = os.environ.get(LANES_ENV)
    if folder and not hasattr(config, "workerinput"):
        shutil.rmtree(folder, ignore_errors=True)


def report(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a worker: write the node ids of the Ray lane, once collected."""
    if in_lanes(config):
        worker = config.workerinput["workerid"]  # type: ignore[attr-defined]
        ray_ids = [item.nodeid for item in items if uses_ray(item)]
        write_json_atomic(Path(os.environ[LANES_ENV]) / f"{worker}.json", ray_ids)


def yield_cpu(config: pytest.Config, item: pytest.Item) -> None:
    """In a worker, before a test outside the Ray lane: lower this worker's CPU priority (and
    that of what it starts) and run its tensors on one intra-op thread, once. The worker that
    runs the Ray lane gets it first, so it only yields once that lane is done.

    One thread: the tests' tensors are tiny, and a second thread that waits for the first costs
    the Ray lane's trials a core for little gain (the model tests run on one thread anyway)."""
    global _yielded
    if in_lanes(config) and not _yielded and not uses_ray(item):
        import torch

        os.nice(10)
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"  # and in the processes it starts
        _yielded = True


_yielded = False


def make_scheduler(config: pytest.Config, log: Any) -> Any:
    """The controller's scheduler: xdist's scope scheduling with the Ray lane as one scope
    (given first, as the largest) and every other test a scope of its own."""
    if not _schedules_by_lanes(config):
        return None
    from xdist.scheduler import LoadScopeScheduling

    folder = Path(os.environ[LANES_ENV])

    class LaneScheduling(LoadScopeScheduling):
        _ray_ids: frozenset[str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._ray_ids is None:
                self._ray_ids = frozenset(
                    nodeid
                    for report in sorted(folder.glob("*.json"))
                    for nodeid in json.loads(report.read_text())
                )
            return RAY_LANE if nodeid in self._ray_ids else nodeid

    return LaneScheduling(config, log)


def _schedules_by_lanes(config: pytest.Config) -> bool:
    """``-n N`` with xdist's default ``--dist load``; other ``--dist`` modes are left alone."""
    return bool(config.getoption("numprocesses", None)) and (
        config.getoption("dist", "no") == "load"
    )
