"""Errors that the command line reports as one line, without a traceback."""

from __future__ import annotations

__all__ = ["EgotuneError", "UsageError"]


class EgotuneError(Exception):
    """A failure the user can fix: the message names the file, key or flag and what to do.

    ``exit_code`` is the process exit status the CLI uses for it.
    """

    exit_code = 1


class UsageError(EgotuneError):
    """A wrong flag or argument on the command line."""

    exit_code = 2
