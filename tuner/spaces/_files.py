"""Space files: bundled ones, ``$EGOTUNE_SPACES`` folders, paths; reading them."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from tuner.hints import did_you_mean
from tuner.spaces._keys import SpaceError
from tuner.spaces._space import SearchSpace, parse_space
from tuner.training.config import load_yaml, yaml_error_text

__all__ = [
    "BUNDLED_SPACES_DIR",
    "SPACES_ENV",
    "find_space",
    "list_spaces",
    "load_space",
    "space_dirs",
]

SPACES_ENV = "EGOTUNE_SPACES"


BUNDLED_SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"


def space_dirs() -> list[Path]:
    """Folders searched for named spaces: ``$EGOTUNE_SPACES`` entries first, then the bundled."""
    extra = [Path(p) for p in os.environ.get(SPACES_ENV, "").split(os.pathsep) if p]
    return [*extra, BUNDLED_SPACES_DIR]


def list_spaces() -> dict[str, Path]:
    """Name -> file of every space found in :func:`space_dirs` (earlier folders win)."""
    found: dict[str, Path] = {}
    for folder in space_dirs():
        if folder.is_dir():
            for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
                found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def find_space(name_or_path: str | os.PathLike[str]) -> Path:
    """A space file from a bundled name (``fig10_ms_classification_grid``) or a path."""
    text = os.fspath(name_or_path)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or os.sep in text or "/" in text:
        if not path.is_file():
            raise SpaceError(text, "", "no such file")
        return path
    spaces = list_spaces()
    if text not in spaces:
        hint = did_you_mean(text, spaces)
        suffix = f"; {hint}" if hint else f" (known: {', '.join(spaces)})"
        raise SpaceError(text, "", f"unknown search space{suffix}")
    return spaces[text]


def _display_path(path: Path) -> str:
    """The path as messages show it: relative to the working folder or the repository."""
    resolved = path.resolve()
    for base in (Path.cwd(), BUNDLED_SPACES_DIR.parent):
        try:
            return str(resolved.relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)


def load_space(name_or_path: str | os.PathLike[str]) -> SearchSpace:
    """Read, validate and return a search space (bundled name or YAML path)."""
    path = find_space(name_or_path)
    source = _display_path(path)
    try:
        document = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpaceError(source, "", f"not valid YAML: {yaml_error_text(exc)}") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        message = f"not UTF-8 text (line {line}); save it as UTF-8"
        raise SpaceError(source, "", message) from None
    except ValueError as exc:
        raise SpaceError(source, "", f"not valid YAML: {exc}") from None
    return parse_space(document, source=source, name=path.stem)
