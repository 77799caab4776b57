"""``egotune bench NAME [ARGS...]``: run a benchmark script from the repository's ``bench/`` folder.

Each ``bench/<name>.py`` (names without a leading underscore) is a benchmark with a
``main(argv) -> int`` function; its own ``--help`` lists its flags. The benchmarks live beside the
package in a source checkout (they are not installed), so this command needs one.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import sys
from pathlib import Path
from types import ModuleType

from tuner.cli._help import plain_help
from tuner.errors import EgotuneError, UsageError

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"
# what `egotune bench all` (and `make bench`) runs: cheap enough for a CPU-only machine
DEFAULT_SET = ("model_stats", "data_loader")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run a benchmark from bench/ (list: egotune bench list)",
        description=plain_help(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "name", help="benchmark name (file bench/NAME.py), 'list' (--json) or 'all'"
    )
    parser.add_argument("args", nargs=argparse.REMAINDER, help="flags passed to the benchmark")
    parser.set_defaults(handler=_run)


def available() -> dict[str, Path]:
    """Benchmark names and their script paths."""
    if not BENCH_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(BENCH_DIR.glob("*.py")) if not p.stem.startswith("_")}


def _run(args: argparse.Namespace) -> int:
    scripts = available()
    if not scripts:
        raise EgotuneError(
            f"no benchmarks found in {BENCH_DIR}: `egotune bench` runs from a source checkout "
            "(git clone, then pip install -e .)"
        )
    if args.name == "list":
        return _list(scripts, args.args)
    names = list(DEFAULT_SET) if args.name == "all" else [args.name]
    for name in names:
        if name not in scripts:
            raise UsageError(
                f"unknown benchmark {name!r} for `egotune bench`: choose one of "
                f"{', '.join(scripts)}, 'list' or 'all'"
            )
    status = 0
    for name in names:
        argv = list(args.args) if args.name != "all" else []
        command = shlex.join(["egotune", "bench", name, *argv])
        os.environ["EGOTUNE_BENCH_COMMAND"] = command
        try:
            status = max(status, int(_load(scripts[name]).main(argv) or 0))
        finally:
            os.environ.pop("EGOTUNE_BENCH_COMMAND", None)
    return status


def _list(scripts: dict[str, Path], flags: list[str]) -> int:
    if flags not in ([], ["--json"]):
        raise UsageError(f"egotune bench list: unknown flags {' '.join(flags)} (only --json)")
    entries = [
        {"name": name, "summary": _summary(path), "script": str(path)}
        for name, path in scripts.items()
    ]
    if flags:
        print(json.dumps(entries, indent=2))
    else:
        for entry in entries:
            print(f"{entry['name']:22s} {entry['summary']}")
    return 0


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"egotune_bench_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise EgotuneError(f"cannot load benchmark {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, "main", None)):
        raise EgotuneError(f"benchmark {path} has no main(argv) function")
    return module


def _summary(path: Path) -> str:
    """First line of the script's docstring, read without importing it."""
    text = path.read_text()
    for quote in ('"""', "'''"):
        if text.lstrip().startswith(quote):
            return text.lstrip()[3:].split("\n", 1)[0].strip()
    return ""
