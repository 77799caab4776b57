"""Imported at start-up by every Python process the test suite starts (``PYTHONPATH``), Ray's
workers included: while the folder ``$EGOTUNE_TEST_FORKS`` exists, each process forked from a
Python process (``os.fork``: DataLoader workers; not ``subprocess``) leaves a file there naming
itself and its parent, with the parent's command line (a Ray worker's reads ``ray::...``)."""

import os


def _note_fork() -> None:
    folder = os.environ.get("EGOTUNE_TEST_FORKS")
    if not folder or not os.path.isdir(folder):
        return
    parent = os.getppid()
    try:
        with open(f"/proc/{parent}/cmdline", "rb") as source:
            command = source.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        command = ""
    with open(os.path.join(folder, f"{parent}-{os.getpid()}"), "w") as note:
        note.write(command)


os.register_at_fork(after_in_child=_note_fork)
