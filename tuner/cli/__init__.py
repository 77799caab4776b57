"""The ``egotune`` command line.

Each command group is one module of this package (``tuner.cli.search``, ``tuner.cli.results``,
...) exposing ``register(subparsers)``; the handler it sets with ``set_defaults(handler=...)``
returns the exit status. Modules are imported when the parser is built, and each imports ray,
torch or the training engine only inside its handlers, so ``egotune results`` runs without them.
Errors derived from :class:`tuner.errors.EgotuneError` (and ``ValueError`` from configuration
checks) print one line and exit non-zero; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings
from collections.abc import Sequence

from tuner.errors import EgotuneError
from tuner.tune.session import use_token_when_available

__all__ = ["build_parser", "main"]

# Command modules, in the order their groups appear in ``egotune --help``.
_COMMAND_MODULES = (
    "tuner.cli.data",
    "tuner.cli.train",
    "tuner.cli.spaces",
    "tuner.cli.search",
    "tuner.cli.submit",
    "tuner.cli.results",
    "tuner.cli.ui",
    "tuner.cli.replay",
    "tuner.cli.bench",
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
    if getattr(args, "address", None) or os.environ.get("RAY_ADDRESS"):
        use_token_when_available()  # before anything imports ray
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    previous_format = warnings.formatwarning
    if not args.debug:
        warnings.formatwarning = _one_line_warning
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("egotune: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `egotune ... | head`: the reader left; nothing to report
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python flushes stdout at exit
        return 141
    except Exception as exc:
        code = _user_error_code(exc)
        if code is None or args.debug:
            traceback.print_exc()
            return code if code is not None else 1
        print(f"egotune: error: {_one_line(exc)}", file=sys.stderr)
        return code
    finally:
        warnings.formatwarning = previous_format


def _one_line(exc: Exception) -> str:
    """The message on one line (a wrapped library message keeps its words, not its breaks)."""
    return " ".join(str(exc).split())


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """Warnings as ``egotune: warning: ...`` lines, without the source line Python adds."""
    if issubclass(category, UserWarning):
        return f"egotune: warning: {message}\n"
    return f"egotune: warning: {category.__name__}: {message} ({filename}:{lineno})\n"


# Errors of the packages below ``tuner`` that a user fixes: a dataset problem, a frame store that
# cannot be built, ImageNet weights that cannot be had. Looked up only when their package is
# already imported, so reporting an error never imports torch.
_LIBRARY_ERRORS = (
    ("data_pipeline", "DatasetError"),
    ("data_pipeline", "FrameStoreError"),
    ("models", "WeightsUnavailableError"),
)


def _user_error_code(exc: Exception) -> int | None:
    """Exit status for errors the user can fix, ``None`` for bugs (shown with a traceback)."""
    if isinstance(exc, EgotuneError):
        return exc.exit_code
    if isinstance(exc, ValueError):
        return 2
    if isinstance(exc, OSError | FloatingPointError):  # a diverged run's message names lr
        return 1
    for module_name, class_name in _LIBRARY_ERRORS:
        error_type = getattr(sys.modules.get(module_name), class_name, None)
        if error_type is not None and isinstance(exc, error_type):
            return 1
    return None
