"""Fixtures shared by the whole suite: small synthetic GTEA61 trees and tiny configurations."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from data_pipeline import synthesize
from tests import fork_log, lanes

SYNTH_CLASSES = 4


def pytest_configure(config: pytest.Config) -> None:
    """Decoded-frame stores of test runs go to a temporary folder, not the user's cache. Ray's
    token file exists before any test starts a Ray: the local clusters of parallel workers would
    otherwise each write a new one, and a client could read another cluster's token."""
    if "EGOTUNE_CACHE_DIR" not in os.environ:
        os.environ["EGOTUNE_CACHE_DIR"] = tempfile.mkdtemp(prefix="egotune-test-cache-")
    fork_log.install()
    if not hasattr(config, "workerinput") and not (Path.home() / ".ray" / "auth_token").is_file():
        from ray._private.authentication.authentication_token_setup import (
            generate_and_save_token,
        )

        generate_and_save_token()
    lanes.prepare(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that stop the shared local Ray (to start clusters of their own) run last, so the
    shared one starts once for all the others. In a parallel run the tests that run Ray form
    one lane, run by one worker in this order (:mod:`tests.lanes`)."""
    items.sort(key=lambda item: "own_ray_cluster" in getattr(item, "fixturenames", ()))
    lanes.report(config, items)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: without xdist, never called
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    return lanes.make_scheduler(config, log)


def pytest_sessionfinish(session: pytest.Session) -> None:
    lanes.finish(session.config)
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


@pytest.fixture(autouse=True)
def _ray_auth_mode_stays_put() -> Iterator[None]:
    """Connecting to an address turns ``RAY_AUTH_MODE=token`` on in this process when a token
    file exists (as a user's shell would). Undone after each test: a local Ray started later in
    the suite would otherwise start its GCS with tokens that this process's Ray does not send."""
    before = os.environ.get("RAY_AUTH_MODE")
    yield
    if before is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = before


def _start_local_ray() -> None:
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            num_gpus=0,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
        )


@pytest.fixture(scope="session")
def local_ray() -> None:
    """The suite's one local Ray: 2 CPUs, no GPU, no dashboard, quiet workers.

    Started by the first test that asks for it and kept for every later one (a Ray start costs
    seconds). Tests that need a cluster of their own (``own_ray_cluster``) run after all others
    in a plain run; in a parallel run (``-n``) a test after them starts it again.
    """
    _start_local_ray()


@pytest.fixture(scope="module")
def local_ray_address(local_ray: None) -> Iterator[str]:
    """The shared local Ray's GCS address: a subprocess search joins it with ``--address``
    instead of starting a Ray of its own (seconds per search), as on a cluster.

    A driver killed while Ray prepares one of its placement groups can leave that group's CPUs
    held on the node for good (Ray's GCS removes the group without releasing what the raylet
    prepared; ray-project/ray#66188). After the module, the shared Ray must have every CPU back;
    one that does not is restarted for the tests after it, with a warning."""
    import ray

    _start_local_ray()
    yield str(ray.get_runtime_context().gcs_address)
    if ray.is_initialized() and not _every_cpu_free(within_s=10.0):
        held = ray.cluster_resources().get("CPU", 0) - ray.available_resources().get("CPU", 0)
        ray.shutdown()
        warnings.warn(
            f"the shared local Ray held {held:g} CPU after the module's tests ended "
            "(ray-project/ray#66188): restarted",
            stacklevel=1,
        )


def _every_cpu_free(within_s: float) -> bool:
    import ray

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) >= ray.cluster_resources().get("CPU", 0):
            return True
        time.sleep(0.2)
    return False


@pytest.fixture(autouse=True)
def _local_ray_is_up(request: pytest.FixtureRequest) -> Iterator[None]:
    """Starts the shared Ray again for a test that needs it after one that stopped it. In a
    parallel run, a test outside the Ray lane that starts Ray fails: it would share the cores
    with the other lane's trials unannounced (it should ask for ``local_ray``)."""
    lanes.yield_cpu(request.config, request.node)
    if "local_ray" in request.fixturenames and "own_ray_cluster" not in request.fixturenames:
        _start_local_ray()
    ray_was_up = _ray_is_up()
    yield
    started = _ray_is_up() and not ray_was_up
    if started and lanes.in_lanes(request.config) and not lanes.uses_ray(request.node):
        sys.modules["ray"].shutdown()
        pytest.fail("this test started Ray without asking for local_ray", pytrace=False)


def _ray_is_up() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


@pytest.fixture
def own_ray_cluster() -> Iterator[None]:
    """For a test that starts a Ray cluster of its own: the shared local Ray is stopped first,
    and whatever the test connected to is stopped after it."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module")
def module_tmp(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Path]:
    """A folder for a module's shared search, removed after the module: a search's checkpoints
    are hundreds of megabytes, and a suite keeping every module's would fill a small disk."""
    folder = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic GTEA61 (course layout, real defects) small enough for CPU training tests."""
    summary = synthesize(
        tmp_path_factory.mktemp("gtea61"),
        classes=SYNTH_CLASSES,
        videos_per_class=1,
        size=(96, 64),
        seed=3,
    )
    return summary.root


def tiny_config_values(**overrides: object) -> dict[str, object]:
    """Settings of a tiny CPU run: ResNet-18 at 32 px, 3 frames, random weights (an epoch of
    the synthetic dataset is about 0.1 s on one thread, a third of one at 64 px)."""
    values: dict[str, object] = {
        "backbone": "resnet18",
        "weights": "none",
        "crop_size": 32,
        "frames": 3,
        "batch_size": 4,
        "mem_size": 32,
        "num_workers": 0,
        "device": "cpu",
        "epochs": 2,
        "stage1": {"epochs": 1},
    }
    values.update(overrides)
    return values
