"""Ctrl-C during a Ray Tune run: the trials stop, Tune saves the experiment's state, and the
caller learns that the run was interrupted, to say so and how to resume it."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Interrupt", "graceful_interrupt"]


@dataclass
class Interrupt:
    """Whether a Ctrl-C reached the run."""

    seen: bool = False


@contextlib.contextmanager
def graceful_interrupt() -> Iterator[Interrupt]:
    """Ctrl-C during ``Tuner.fit``: Tune stops the trials and saves the search's state, and the
    caller learns that the search was interrupted rather than finished.

    Tune's own SIGINT handler ends the run the same way but leaves no trace a caller could read,
    and logs a ``Tuner.restore(...)`` hint that is not egotune's command. Its SIGUSR1 handler (set
    up when the run starts, whatever ``TUNE_DISABLE_SIGINT_HANDLER`` says) does the same
    graceful stop, so SIGINT is taken here and passed on to it. A second Ctrl-C, or one before
    Tune's run has started, raises ``KeyboardInterrupt`` at once.
    """
    interrupt = Interrupt()
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        yield interrupt
        return
    before_usr1 = signal.getsignal(signal.SIGUSR1)

    def on_sigint(signum: int, frame: Any) -> None:
        tune_stop = signal.getsignal(signal.SIGUSR1)
        if interrupt.seen or not callable(tune_stop) or tune_stop is before_usr1:
            raise KeyboardInterrupt
        interrupt.seen = True
        print(
            "\negotune: interrupted: stopping the trials and saving the search's state "
            "(Ctrl-C again stops at once)",
            file=sys.stderr,
            flush=True,
        )
        tune_stop(signal.SIGUSR1, frame)

    previous_sigint = signal.signal(signal.SIGINT, on_sigint)
    previous_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    tune_logger = logging.getLogger("ray.tune.tune")
    quiet = _TuneInterruptLines(interrupt)
    tune_logger.addFilter(quiet)
    try:
        yield interrupt
    finally:
        tune_logger.removeFilter(quiet)
        _restore_env("TUNE_DISABLE_SIGINT_HANDLER", previous_env)
        signal.signal(signal.SIGINT, previous_sigint)
        signal.signal(signal.SIGUSR1, before_usr1)


class _TuneInterruptLines(logging.Filter):
    """After Ctrl-C, drops Tune's own lines about the stop (its ``Tuner.restore`` hint, the
    trials it stopped): egotune says that the search was interrupted and how to resume it."""

    _DROPPED = (
        "Stop signal received",
        "Experiment has been interrupted",
        "Trials did not complete",
    )

    def __init__(self, interrupt: Interrupt) -> None:
        super().__init__()
        self.interrupt = interrupt

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.interrupt.seen and str(record.msg).startswith(self._DROPPED))


def _restore_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value
