"""Where experiments live, and the record of how each was run (``experiment.json``).

``<storage>/<experiment>/`` holds ``experiment.json`` (written here), ``trials.parquet`` and
``epochs.parquet/`` (:mod:`tuner.results._store`) and Ray Tune's own files. The storage folder is
``--storage``, else ``$EGOTUNE_STORAGE``, else ``~/egotune-results``.

Results tools import this module, so it stays light: it imports neither ray nor torch, and takes
their versions from the installed package metadata.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuner.atomic import write_text_atomic
from tuner.results._store import EPOCHS_DIR, SCHEMA_VERSION, TRIALS_FILE, storage_write_error

__all__ = [
    "METADATA_FILE",
    "STORAGE_ENV",
    "code_version",
    "default_storage",
    "read_experiment_metadata",
    "runtime_versions",
    "write_experiment_metadata",
]

METADATA_FILE = "experiment.json"
STORAGE_ENV = "EGOTUNE_STORAGE"
"""Environment variable naming the default storage folder."""
_VERSIONED_PACKAGES = ("ray", "torch", "torchvision", "optuna", "pyarrow", "pandas", "numpy")
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def default_storage() -> Path:
    """``$EGOTUNE_STORAGE``, else ``~/egotune-results``: where searches write and results read."""
    env = os.environ.get(STORAGE_ENV)
    return Path(env).expanduser() if env else Path.home() / "egotune-results"


def write_experiment_metadata(
    exp_dir: str | os.PathLike[str],
    *,
    space_name: str,
    space_text: str,
    overrides: Mapping[str, Any],
    dataset_fingerprint: str,
    argv: Sequence[str],
) -> dict[str, Any]:
    """Record how the search in ``exp_dir`` is run in ``experiment.json`` and return the record.

    ``space_text`` is the search-space YAML as run and ``overrides`` the resolved ``--set`` values.
    The record also holds the code version (package version and ``git describe``), the dataset
    fingerprint, the versions of Python, Ray, torch and torch's CUDA build, the hostname, the start
    time (UTC, ISO 8601) and the command line. When the file already exists (a resumed search),
    the earlier records move, oldest first, into ``previous_runs``; ``started_at`` stays the
    search's first start and ``resumed_at`` is this run's. The write is atomic.
    """
    path = Path(exp_dir) / METADATA_FILE
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "experiment": Path(exp_dir).name,
        "space": {"name": space_name, "text": space_text, "overrides": dict(overrides)},
        "code_version": code_version(),
        "dataset_fingerprint": dataset_fingerprint,
        "versions": runtime_versions(),
        "hostname": socket.gethostname(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": list(argv),
        "tables": {"trials": TRIALS_FILE, "epochs": EPOCHS_DIR},
    }
    if path.is_file():
        previous = read_experiment_metadata(exp_dir)
        record["previous_runs"] = [*previous.pop("previous_runs", []), previous]
        record["resumed_at"] = record["started_at"]
        record["started_at"] = previous.get("started_at", record["started_at"])
    text = json.dumps(record, indent=2, default=str) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_text_atomic(path, text)
    except OSError as exc:
        raise storage_write_error(exc, path) from None
    # Round-trip so the caller gets exactly what a reader will (tuples as lists, paths as str).
    result: dict[str, Any] = json.loads(text)
    return result


def read_experiment_metadata(exp_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The record :func:`write_experiment_metadata` wrote in ``exp_dir``."""
    path = Path(exp_dir) / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no experiment metadata (is this an experiment folder?)")
    record = json.loads(path.read_text(encoding="utf-8"))
    problem = _shape_problem(record)
    if problem is not None:
        raise ValueError(f"not an experiment record: {problem}")
    checked: dict[str, Any] = record
    return checked


def _shape_problem(record: Any) -> str | None:
    """What makes ``record`` unlike the record :func:`write_experiment_metadata` writes."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__} instead of an object"
    space = record.get("space", {})
    if not isinstance(space, dict):
        return "space is not an object"
    for key in ("name", "text"):
        if not isinstance(space.get(key, ""), str):
            return f"space.{key} is not a string"
    if not isinstance(space.get("overrides", {}), dict):
        return "space.overrides is not an object"
    for key in ("started_at", "experiment"):
        if not isinstance(record.get(key, ""), str):
            return f"{key} is not a string"
    return None


def code_version() -> dict[str, str]:
    """``package_version`` of egotune and ``git`` (``git describe --always --dirty``).

    Either is ``unknown`` when it cannot be told: not installed, not a git checkout, no git.
    """
    try:
        package_version = importlib.metadata.version("egotune")
    except importlib.metadata.PackageNotFoundError:
        package_version = "unknown"
    return {"package_version": package_version, "git": _git_describe(_SOURCE_ROOT)}


def _git_describe(root: Path) -> str:
    # Only a checkout whose root holds the package: an installed copy inside some other
    # repository (a virtual environment in a project) must not report that repository.
    if not (root / ".git").exists():
        return "unknown"
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def runtime_versions() -> dict[str, str]:
    """Versions of Python, the main packages and torch's CUDA build (``unknown`` if absent)."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "unknown"
    versions["cuda"] = _torch_cuda_version()
    return versions


def _torch_cuda_version() -> str:
    """CUDA version torch was built with (``none`` for CPU builds), read without importing torch."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return str(torch.version.cuda or "none")
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return "unknown"
    try:
        text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except OSError:
        return "unknown"
    match = re.search(r"^cuda\b[^=\n]*=\s*(?:'([^']*)'|\"([^\"]*)\"|None)", text, re.MULTILINE)
    if match is None:
        return "unknown"
    return match.group(1) or match.group(2) or "none"
