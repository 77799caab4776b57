"""Counting the processes that Ray's trial workers fork (their DataLoader workers).

:func:`install` puts this folder's ``sitecustomize`` on ``PYTHONPATH`` before any Ray starts, so
every Ray worker notes its forks while the folder :func:`forks_of_ray_workers` watches exists.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = "EGOTUNE_TEST_FORKS"
HERE = Path(__file__).resolve().parent


def install() -> None:
    """Once per test process, before any Ray or subprocess starts."""
    if ENV in os.environ:
        return
    os.environ[ENV] = str(Path(tempfile.mkdtemp(prefix="egotune-test-forks-")) / "log")
    paths = [str(HERE), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)


@contextmanager
def forks_of_ray_workers() -> Iterator[list[str]]:
    """Within the block, notes the forks of every Ray worker; the list holds, after the block,
    one entry per forked process: its parent's pid."""
    folder = Path(os.environ[ENV])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    found: list[str] = []
    try:
        yield found
    finally:
        for note in folder.iterdir():
            if note.read_text().startswith("ray::"):
                found.append(note.name.split("-", 1)[0])
        shutil.rmtree(folder, ignore_errors=True)
