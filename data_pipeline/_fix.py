"""Repairs of the repairable problems found by ``check_dataset``.

A repair never destroys data: missing motion maps are copies of their nearest neighbour, and
duplicates and hidden entries are moved into the quarantine folder (which the scanner never
reads), except macOS ``.DS_Store`` files, which hold nothing but Finder metadata and are deleted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from data_pipeline._check import CheckReport
from data_pipeline._scan import Problem, quarantine_path

__all__ = ["fix_dataset"]


def _free_path(path: Path) -> Path:
    """``path``, or ``path.1``, ``path.2``... if something is already there."""
    candidate, n = path, 0
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate


def _quarantine(dataset_dir: Path, path: Path) -> None:
    target = _free_path(quarantine_path(dataset_dir, path))
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(path, target)


def _apply(problem: Problem, dataset_dir: Path) -> bool:
    """Apply one repair; False when the disk no longer shows the problem."""
    path = problem.path
    if problem.action == "copy":
        if path.exists() or problem.source is None or not problem.source.is_file():
            return False
        shutil.copyfile(problem.source, path)
        return True
    if not (path.exists() or path.is_symlink()):
        return False
    if problem.action == "delete":
        path.unlink()
    else:
        _quarantine(dataset_dir, path)
    return True


def fix_dataset(report: CheckReport) -> list[Problem]:
    """Apply the repair of every problem in ``report``; return the problems repaired.

    Only the listed repairs happen; fatal problems are left for a person to fix.
    """
    return [p for p in report.problems if _apply(p, report.dataset_dir)]
