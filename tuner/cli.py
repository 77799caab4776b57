"""The ``egotune`` command line.

Each command group lives in its own private module exposing ``register(subparsers)``; the handler it
sets with ``set_defaults(handler=...)`` returns the exit status. Errors derived from
:class:`tuner.errors.EgotuneError` (and ``ValueError`` from configuration checks) print one line and
exit non-zero; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

from tuner.errors import EgotuneError

__all__ = ["build_parser", "main"]

# Command modules, in the order their groups appear in ``egotune --help``.
_COMMAND_MODULES = (
    "tuner._cli_data",
    "tuner._cli_train",
    "tuner._cli_spaces",
    "tuner._cli_search",
    "tuner._cli_results",
    "tuner._cli_bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="egotune",
        description="Hyperparameter studies of first-person action recognition on GTEA61.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks instead of one-line errors"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # command group not installed in this build
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("egotune: interrupted", file=sys.stderr)
        return 130
    except (EgotuneError, ValueError, FileNotFoundError, PermissionError) as exc:
        if args.debug:
            traceback.print_exc()
        code = (
            exc.exit_code
            if isinstance(exc, EgotuneError)
            else (2 if isinstance(exc, ValueError) else 1)
        )
        print(f"egotune: error: {exc}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
